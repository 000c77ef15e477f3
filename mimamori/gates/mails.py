"""The gate mail (B6): 登校 / 下校 of one child, from the school, to one address.

It comes from the school's own sender, as every mail of a school does (registry.mails), and
carries the headers every notice mail carries (messages.build). It has no List-Unsubscribe:
that header stops broadcast mail (broadcasts/unsubscribe.py); gate mails are chosen per slot on
the portal's オプション page, which the mail links to, as the 到達テスト and the other notices
do.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

from mimamori.gates.models import Direction, GateReader
from mimamori.mail import messages
from mimamori.registry.mails import school_sender
from mimamori.registry.models import Registrant

WORDS = {Direction.IN: "登校", Direction.OUT: "下校"}


def gate_pass(
    registrant: Registrant, reader: GateReader, direction: str, at: datetime, email: str
) -> EmailMessage:
    school = reader.school
    local = timezone.localtime(at)  # Asia/Tokyo (TIME_ZONE), whatever offset the reader sent
    return messages.build(
        "gates/mail/gate_pass",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "reader": reader,
            "word": WORDS[Direction(direction)],
            "time": f"{local.hour}:{local.minute:02d}",
            "date": f"{local.month}月{local.day}日",
            "options_url": settings.BASE_URL + "/portal/options/",
            "passes_url": settings.BASE_URL + "/portal/passes/",
        },
        sender=school_sender(school),
        to=email,
        domain=school.municipality.mail_domain,
    )

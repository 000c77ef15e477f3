"""Telling staff about an earthquake alert: one mail per address through the outbox (kind
"quake_notice"), posted in the transaction that decided it.

Who is told is the municipality's choice (EarthquakeSettings.tell_*): its own staff, the
staff of its schools, its support desk address, the support centre's staff. Staff logins
without an e-mail address are skipped; the support desk address is the one every
municipality has, so it is on by default. Everyone also sees the alert on the console's 地震 page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db.models import Q

from mimamori.accounts.models import Role, User
from mimamori.mail import messages, outbox
from mimamori.quakes.models import EarthquakeSettings, QuakeAlert, intensity_label

KIND = "quake_notice"
SENDER_LOCAL_PART = "quake"

# What happened, as the mail's template tells it.
HELD = "held"  # raised, waiting for the hold to end (can be cancelled)
SENT = "sent"  # the broadcast left
UPDATED = "updated"  # a later report on the same earthquake
CANCELLED = "cancelled"  # staff cancelled it during the hold
WITHDRAWN = "withdrawn"  # 取消 arrived while it was held: nothing sent
WITHDRAWN_LATE = "withdrawn_late"  # 取消 arrived after it was sent
DRILL = "drill"  # 訓練 / 試験, or a drill by hand: what guardians would have got
UNSENT = "unsent"  # nobody of the municipality receives broadcasts


def recipients(config: EarthquakeSettings) -> list[str]:
    """The addresses told about the municipality's alerts, each once (case-insensitively)."""
    municipality = config.municipality
    wanted = Q(pk__in=[])
    if config.tell_municipality_staff:
        wanted |= Q(role=Role.MUNICIPALITY, municipality=municipality)
    if config.tell_school_staff:
        wanted |= Q(role=Role.SCHOOL, school__municipality=municipality)
    if config.tell_centre:
        wanted |= Q(role=Role.CENTRE)
    staff = User.objects.filter(wanted, is_active=True).exclude(email="").order_by("pk")
    addresses = list(staff.values_list("email", flat=True))
    if config.tell_support_desk and municipality.support_email:
        addresses.append(municipality.support_email)
    return list({address.lower(): address for address in addresses}.values())


def tell(
    alert: QuakeAlert,
    config: EarthquakeSettings,
    event: str,
    *,
    subject: str = "",
    body: str = "",
    answers: Iterable[str] = (),
    by: User | None = None,
    previous: str | None = None,
) -> int:
    """Mail every address told about the municipality's alerts; how many mails were posted.
    ``subject`` and ``body`` are the guardians' mail, where the event has one."""
    municipality = alert.municipality
    sender = messages.sender(
        f"{municipality.name} 地震安否確認（自動）", SENDER_LOCAL_PART, municipality.mail_domain
    )
    context: dict[str, Any] = {
        "event": event,
        "alert": alert,
        "municipality": municipality,
        "intensity": intensity_label(alert.max_intensity),
        "previous": intensity_label(previous) if previous else "",
        "places": [{**p, "label": intensity_label(p["intensity"])} for p in alert.places],
        "guardian_subject": subject,
        "guardian_body": body,
        "answers": list(answers),
        "by": by.get_full_name() or by.get_username() if by is not None else "",
        "console_url": f"{settings.BASE_URL}/console/quakes/",
    }
    posted = 0
    for address in recipients(config):
        message = messages.build(
            "quakes/mail/staff_notice", context, sender=sender, to=address, domain=municipality.mail_domain
        )
        outbox.post(
            message,
            kind=KIND,
            domain=municipality.mail_domain,
            target=f"quake alert {alert.pk}",
            municipality=municipality,
        )
        posted += 1
    return posted

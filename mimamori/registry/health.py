"""Address health (P5): which addresses mail reaches, learnt from every mail that failed.

A permanent "no such user" (5.1.x) suppresses the address at once: mailing it again is what
carriers block a sender for. Any other failed mail (another permanent refusal, or a temporary
one the relay gave up on) counts; MIMAMORI_BOUNCE_LIMIT of them within
MIMAMORI_BOUNCE_WINDOW_DAYS suppress it too, fewer leave it "bouncing" (still mailed). A
suppressed address gets no mail of any kind until it is set again (registry/addresses.py).

The status is the address's, not a slot's: every row that holds it, in every registrant,
changes together.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from mimamori.mail import bounces
from mimamori.mail.bounces import Failure
from mimamori.mail.models import OutgoingMail
from mimamori.mail.smtp import Reply
from mimamori.registry.models import Address, AddressFailure, AddressStatus

log = logging.getLogger(__name__)


def record_failure(email: str, failure: Failure, *, source: str) -> str:
    """Record that a mail to ``email`` failed; returns the address's status after it."""
    key = email.strip().lower()
    with transaction.atomic():
        AddressFailure.objects.create(
            email=key,
            permanent=failure.permanent,
            no_such_user=failure.no_such_user,
            status=failure.status,
            text=failure.text,
            source=source,
        )
        since = timezone.now() - timedelta(days=settings.MIMAMORI_BOUNCE_WINDOW_DAYS)
        recent = AddressFailure.objects.filter(email=key, at__gte=since).count()
        suppressed = failure.no_such_user or recent >= settings.MIMAMORI_BOUNCE_LIMIT
        status = AddressStatus.SUPPRESSED if suppressed else AddressStatus.BOUNCING
        rows = Address.objects.annotate(key=Lower("email")).filter(key=key)
        # Never back from suppressed to bouncing: only setting the address again does that.
        if rows.exclude(status=AddressStatus.SUPPRESSED).exclude(status=status).update(status=status):
            log.info("address %s is now %s (%s, %s)", _masked(key), status, failure.status, source)
        return rows.values_list("status", flat=True).first() or str(status)


def outgoing_failed(sender: Any, mail: OutgoingMail, reply: Reply, **kwargs: Any) -> None:
    """A mail of the outbox (mail/outbox.py) failed for good: it counts as any failed mail does."""
    if reply.about_recipient:
        record_failure(mail.to, bounces.from_reply(reply), source="smtp")


def reset(email: str) -> None:
    """The address was set again (by the guardian or staff): mail it again, as a new address."""
    key = email.strip().lower()
    Address.objects.annotate(key=Lower("email")).filter(key=key).exclude(status=AddressStatus.OK).update(
        status=AddressStatus.OK
    )


def _masked(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:2]}…@{domain}"

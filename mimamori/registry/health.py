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

import functools
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from mimamori.mail import bounces, outbox
from mimamori.mail.bounces import Failure
from mimamori.mail.models import OutgoingMail
from mimamori.mail.smtp import Reply
from mimamori.registry import mails
from mimamori.registry.models import Address, AddressFailure, AddressStatus, RegistrantStatus, School

log = logging.getLogger(__name__)


def record_failure(email: str, failure: Failure, *, source: str) -> str:
    """Record that a mail to ``email`` failed; returns the address's status after it."""
    key = email.strip().lower()
    rows = Address.objects.annotate(key=Lower("email")).filter(key=key)
    if not rows.exists():
        # Nobody holds it any more (changed, erased): keeping its history would keep an
        # address no retention rule would ever erase.
        return "unregistered"
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
        # Never back from suppressed to bouncing: only setting the address again does that.
        changing = rows.exclude(status=AddressStatus.SUPPRESSED).exclude(status=status)
        newly = list(changing.select_related("registrant__school__municipality"))
        if newly:
            Address.objects.filter(pk__in=[row.pk for row in newly]).update(status=status)
            log.info("address %s is now %s (%s, %s)", _masked(key), status, failure.status, source)
        if status == AddressStatus.SUPPRESSED:
            _tell_guardians(newly)
        return rows.values_list("status", flat=True).first() or str(status)


def _tell_guardians(suppressed: Sequence[Address]) -> None:
    """Each guardian whose address was just suppressed hears it once, at the first of their
    other slots that still receives mail (any slot: 3 and 4 too); none if there is no such."""
    told: set[str] = set()
    for address in suppressed:
        registrant = address.registrant
        working = (
            Address.objects.filter(registrant=registrant, status=AddressStatus.OK).order_by("slot").first()
        )
        if working is None or working.email.lower() in told:
            continue
        told.add(working.email.lower())
        municipality = registrant.school.municipality
        outbox.post(
            functools.partial(
                mails.address_suppressed, registrant, address.slot, address.email, working.slot, working.email
            ),
            to=working.email,
            kind="address_suppressed",
            target=f"registrant {registrant.pk}",
            municipality=municipality,
            domain=municipality.mail_domain,
        )


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


def undeliverable(school: School) -> QuerySet[Any]:
    """The school's 「届かないアドレス」: active registrants' addresses that are suppressed or
    bouncing, with the latest failure's time and words, by grade, class and name."""
    latest = AddressFailure.objects.filter(email=Lower(OuterRef("email"))).order_by("-at")
    return (
        Address.objects.filter(
            registrant__school=school,
            registrant__status=RegistrantStatus.ACTIVE,
            status__in=[AddressStatus.SUPPRESSED, AddressStatus.BOUNCING],
        )
        .select_related("registrant")
        .annotate(failed_at=Subquery(latest.values("at")[:1]), failure=Subquery(latest.values("text")[:1]))
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana", "slot")
    )

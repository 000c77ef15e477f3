"""Reminders to the unconfirmed (P3): the same mails, with the same links, sent once more.

A reminder puts the chosen delivery rows back to pending with the reminder's number as their
round and queues their chunks, so delivery, retries, the sweep and finish_if_done work as
for the first sending. A mail is sent again only if one of the registrants it names still
needs it: not confirmed, active, broadcast mail on, and the address still in one of the
broadcast slots (the municipality's, 1 and 2 by default) of that registrant. A shared
sibling address goes again when either child has not confirmed. For a 安否確認 (B1) answering
is confirming (the first answer writes the receipt), so the same rule reminds exactly those
who have not answered, and the mail's 安否確認 block says it is a reminder to answer.

Staff send one by hand; a broadcast may also name minutes after sending at which the sweep
sends them automatically. Either way at most MIMAMORI_MAX_REMINDERS go out, one at a time:
never while the broadcast is still sending its previous round.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.broadcasts import lanes
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus, Recipient
from mimamori.broadcasts.targeting import broadcast_municipality, target_schools
from mimamori.receipts.models import Receipt, Reminder
from mimamori.registry.models import Address, AddressStatus, RegistrantStatus

log = logging.getLogger(__name__)


class ReminderRefused(Exception):
    """Why a reminder cannot go now; the message is for staff."""


def link_expires_at(broadcast: Broadcast) -> datetime:
    # As confirming.expires_at: the links stop working this long after sending.
    sent = broadcast.send_requested_at or broadcast.created_at
    return sent + timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)


def send_reminder(broadcast: Broadcast, user: User | None = None) -> int:
    """Send a reminder now (by ``user``; None = automatic); return how many mails go out.

    Raises ReminderRefused when the broadcast does not allow one now. A reminder by hand that
    would reach nobody is refused too; an automatic one is recorded with 0 mails, so that the
    schedule moves on.
    """
    with transaction.atomic():
        # The row lock makes a click and the sweep (or two sweeps) take turns.
        locked = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
        _check(locked)
        count = _remind(locked, user, allow_empty=user is None)
    broadcast.refresh_from_db()
    return count


def _check(broadcast: Broadcast) -> None:
    if not broadcast.request_confirmation:
        raise ReminderRefused(_("This broadcast did not ask for a read confirmation."))
    if broadcast.status in (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED, BroadcastStatus.CANCELLED):
        raise ReminderRefused(_("This broadcast has not been sent yet."))
    if broadcast.status == BroadcastStatus.SENDING:
        raise ReminderRefused(_("The broadcast is still being sent. Send a reminder once it has finished."))
    if broadcast.reminders_sent >= settings.MIMAMORI_MAX_REMINDERS:
        raise ReminderRefused(
            _("The most reminders allowed (%(max)d) have already been sent.")
            % {"max": settings.MIMAMORI_MAX_REMINDERS}
        )
    if timezone.now() >= link_expires_at(broadcast):
        raise ReminderRefused(_("The confirmation links of this broadcast have expired."))
    if broadcast.answers_closed_at is not None:
        # A reminder would ask for an answer that the page no longer takes.
        raise ReminderRefused(_("Answering is closed: guardians can no longer answer."))


def _remind(broadcast: Broadcast, user: User | None, *, allow_empty: bool) -> int:
    number = broadcast.reminders_sent + 1
    now = timezone.now()
    chosen = Delivery.objects.filter(
        broadcast=broadcast, pk__in=unconfirmed_recipients(broadcast).values("delivery_id")
    )
    count = chosen.update(
        status=DeliveryStatus.PENDING,
        round=number,
        attempts=0,
        next_attempt_at=now,
        claim=None,
        claimed_at=None,
        reply="",
    )
    if not count and not allow_empty:
        raise ReminderRefused(_("Every household this broadcast reached has confirmed; nobody to remind."))
    Reminder.objects.create(broadcast=broadcast, number=number, sent_at=now, created_by=user, messages=count)
    fields: dict[str, object] = {"reminders_sent": number}
    if count:
        fields.update(status=BroadcastStatus.SENDING, finished_at=None)
    Broadcast.objects.filter(pk=broadcast.pk).update(**fields)
    broadcast.refresh_from_db()
    chunks = (
        Delivery.objects.filter(broadcast=broadcast, round=number, status=DeliveryStatus.PENDING)
        .order_by("chunk")
        .values_list("chunk", flat=True)
        .distinct()
    )
    for chunk in chunks:
        lanes.queue_chunk(broadcast, chunk)
    log.info("broadcast %s: reminder %s to %s addresses", broadcast.pk, number, count)
    audit.record(
        "reminder.sent",
        actor=user,
        target=f"broadcast {broadcast.pk}",
        municipality=broadcast_municipality(broadcast),
        reminder=number,
        automatic=user is None,
        messages=count,
    )
    return count


def unconfirmed_recipients(broadcast: Broadcast) -> QuerySet[Recipient]:
    """The broadcast's recipients a reminder is for (see the module's rule)."""
    slot_rule = Q()
    for city in {school.municipality for school in target_schools(broadcast)}:
        slot_rule |= Q(registrant__school__municipality=city, slot__in=sorted(city.broadcast_slots))
    still_there = (
        Address.objects.filter(slot_rule or Q(pk__in=[]), registrant=OuterRef("registrant_id"))
        .exclude(status=AddressStatus.SUPPRESSED)  # mail to it would fail again (P5)
        .annotate(key=Lower("email"))
        .filter(key=Lower(OuterRef("delivery__email")))
    )
    return (
        Recipient.objects.filter(
            broadcast=broadcast,
            registrant__status=RegistrantStatus.ACTIVE,
            registrant__receive_broadcasts=True,
        )
        .exclude(Exists(Receipt.objects.filter(broadcast=broadcast, registrant=OuterRef("registrant_id"))))
        .filter(Exists(still_there))
    )


def due_reminders(now: datetime | None = None) -> int:
    """Send the automatic reminders whose time has come; return how many were sent."""
    now = now or timezone.now()
    sent = 0
    candidates = (
        Broadcast.objects.filter(
            status=BroadcastStatus.SENT,
            request_confirmation=True,
            reminders_sent__lt=settings.MIMAMORI_MAX_REMINDERS,
            send_requested_at__gt=now - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS),
        )
        .exclude(reminder_minutes=[])
        .only("pk", "send_requested_at", "reminder_minutes", "reminders_sent")
    )
    for broadcast in candidates:
        due = _next_due(broadcast)
        if due is None or due > now:
            continue
        with transaction.atomic():
            locked = Broadcast.objects.select_for_update().get(pk=broadcast.pk)
            due = _next_due(locked)
            # Checked again under the lock: another worker's sweep may have sent it meanwhile.
            if due is None or due > now:
                continue
            try:
                _check(locked)
            except ReminderRefused:
                continue
            _remind(locked, None, allow_empty=True)
            sent += 1
    return sent


def _next_due(broadcast: Broadcast) -> datetime | None:
    minutes = sorted(broadcast.reminder_minutes)
    done = broadcast.reminders_sent
    if broadcast.send_requested_at is None or done >= len(minutes):
        return None
    return broadcast.send_requested_at + timedelta(minutes=minutes[done])

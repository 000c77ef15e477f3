"""Verbs staff use: compose a broadcast, send it, watch it, retry what failed (S1, S15, P4)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, OuterRef, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori import text
from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.broadcasts import lanes
from mimamori.broadcasts.models import (
    BODY_MAX,
    OPEN,
    SUBJECT_MAX,
    AudienceGroup,
    Broadcast,
    BroadcastKind,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Recipient,
)
from mimamori.broadcasts.targeting import (
    Scope,
    audience,
    broadcast_municipality,
    is_suppressed,
    save_scope,
    target_schools,
)
from mimamori.registry import answers as answer_rules

REMINDER_MINUTES_MAX = 7 * 24 * 60


def compose(
    user: User,
    *,
    subject: str,
    body: str,
    scope: Scope,
    urgent: bool = False,
    request_confirmation: bool = False,
    reminder_minutes: Iterable[int] = (),
    answers: Iterable[str] = (),
) -> Broadcast:
    """Save a draft. The scope was resolved against the user's own (targeting.resolve_scope).

    ``answers``: the choices guardians answer with (B1); a broadcast with choices requests
    confirmation whatever ``request_confirmation`` says (answering is confirming)."""
    checked = _checked(subject, body, scope, request_confirmation, reminder_minutes, answers)
    with transaction.atomic():
        broadcast = Broadcast.objects.create(
            created_by=user,
            subject=checked.subject,
            body=checked.body,
            urgent=urgent,
            request_confirmation=checked.request_confirmation,
            reminder_minutes=checked.reminder_minutes,
            answers=checked.answers,
        )
        save_scope(broadcast, scope)
    return broadcast


def revise(
    broadcast: Broadcast,
    *,
    subject: str,
    body: str,
    scope: Scope,
    urgent: bool = False,
    request_confirmation: bool = False,
    reminder_minutes: Iterable[int] = (),
    answers: Iterable[str] = (),
) -> bool:
    """Change a draft in place (editing it from its preview); False if it was sent meanwhile."""
    checked = _checked(subject, body, scope, request_confirmation, reminder_minutes, answers)
    with transaction.atomic():
        locked = Broadcast.objects.select_for_update().filter(pk=broadcast.pk, status=BroadcastStatus.DRAFT)
        if not locked.update(
            subject=checked.subject,
            body=checked.body,
            urgent=urgent,
            request_confirmation=checked.request_confirmation,
            reminder_minutes=checked.reminder_minutes,
            answers=checked.answers,
        ):
            return False
        broadcast.refresh_from_db()
        save_scope(broadcast, scope)
    return True


def discard(broadcast: Broadcast, by: User) -> bool:
    """Delete a draft; False if it was sent meanwhile (a sent broadcast is never deleted)."""
    with transaction.atomic():
        municipality = broadcast_municipality(broadcast)
        deleted, _counts = Broadcast.objects.filter(pk=broadcast.pk, status=BroadcastStatus.DRAFT).delete()
        if deleted:
            audit.record(
                "broadcast.draft_deleted",
                actor=by,
                target=f"broadcast {broadcast.pk}",
                municipality=municipality,
                subject=broadcast.subject,
            )
    return bool(deleted)


@dataclass(frozen=True)
class Checked:
    """A draft's values as saved."""

    subject: str
    body: str
    request_confirmation: bool
    reminder_minutes: list[int]
    answers: list[str]


def _checked(
    subject: str,
    body: str,
    scope: Scope,
    request_confirmation: bool,
    reminder_minutes: Iterable[int],
    answers: Iterable[str] = (),
) -> Checked:
    """The values as saved, or ValidationError."""
    subject, body = subject.strip(), body.strip()
    errors = {}
    choices = list(answers)
    if (wrong := answer_rules.problem(choices)) is not None:
        errors["answers"] = wrong
    elif choices:
        request_confirmation = True
    if not subject:
        errors["subject"] = _("Please enter a subject.")
    elif len(subject) > SUBJECT_MAX:
        errors["subject"] = _("The subject is too long (at most %(max)d characters).") % {"max": SUBJECT_MAX}
    elif problem := text.problem(subject):
        errors["subject"] = str(problem)
    if not body:
        errors["body"] = _("Please enter the message.")
    elif len(body) > BODY_MAX:
        errors["body"] = _("The message is too long (at most %(max)d characters).") % {"max": BODY_MAX}
    elif problem := text.problem(body, multiline=True):
        errors["body"] = str(problem)
    if request_confirmation and (closed := _without_confirmation_links(scope)):
        # A municipality may not offer confirmation URLs (S12); asking for a read confirmation
        # there would promise staff a count that can never come.
        errors["request_confirmation"] = _(
            "%(names)s does not offer confirmation URLs, so a read confirmation cannot be "
            "requested. Send without requesting confirmation."
        ) % {"names": "、".join(closed)}
    minutes = sorted(set(reminder_minutes))
    if minutes and "request_confirmation" not in errors:
        if not request_confirmation:
            errors["reminder_minutes"] = _("Automatic reminders need a read confirmation to be requested.")
        elif len(minutes) > settings.MIMAMORI_MAX_REMINDERS:
            errors["reminder_minutes"] = _("At most %(max)d automatic reminders can be scheduled.") % {
                "max": settings.MIMAMORI_MAX_REMINDERS
            }
        elif not all(1 <= m <= REMINDER_MINUTES_MAX for m in minutes):
            errors["reminder_minutes"] = _("Reminders are sent from 1 minute to 7 days after sending.")
    if errors:
        raise ValidationError(errors)
    return Checked(subject, body, request_confirmation, minutes, answer_rules.clean(choices))


def _without_confirmation_links(scope: Scope) -> list[str]:
    cities = {m.pk: m for m in scope.municipalities}
    cities.update((s.municipality_id, s.municipality) for s in scope.schools)
    return sorted(m.name for m in cities.values() if not m.confirmation_links_enabled)


class NoRecipients(ValidationError):
    """A broadcast whose audience is empty: sending it would end 配信済み having mailed nobody."""

    def __init__(self) -> None:
        super().__init__(
            _(
                "Nobody would receive this broadcast: no active registrant in the chosen schools, "
                "grades and classes has broadcast mail on at an address that receives it. "
                "Choose other recipients."
            ),
            code="no_recipients",
        )


def send(broadcast: Broadcast, by: User | None = None) -> bool:
    """Start sending a draft, or a scheduled broadcast now; False if it was already sent (or
    cancelled). The work happens in the background.

    ``by`` is the staff member who pressed send, for the audit log. A broadcast that would reach
    nobody is refused (NoRecipients); a maintenance notice, which the system sends to whoever
    is registered, is not.
    """
    _refuse_an_empty_audience(broadcast)
    return _start(broadcast, by, (BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED))


def _refuse_an_empty_audience(broadcast: Broadcast) -> None:
    """NoRecipients for a draft or scheduled alert that would reach nobody (maintenance notices
    go to whoever is registered, so they are not refused)."""
    if (
        (broadcast.is_draft or broadcast.is_scheduled)
        and broadcast.kind == BroadcastKind.ALERT
        and not audience(broadcast).exists()
    ):
        raise NoRecipients


def _start(
    broadcast: Broadcast, by: User | None, statuses: tuple[BroadcastStatus, ...], scheduled_at: str = ""
) -> bool:
    with transaction.atomic():
        fields: dict[str, object] = {"status": BroadcastStatus.SENDING, "send_requested_at": timezone.now()}
        if broadcast.request_confirmation and any(
            not school.municipality.confirmation_links_enabled for school in target_schools(broadcast)
        ):
            # The municipality turned confirmation links off after this draft was written (S12).
            fields.update(request_confirmation=False, reminder_minutes=[])
        # A conditional update: of a click, a second click and the sweep, one starts it.
        started = Broadcast.objects.filter(pk=broadcast.pk, status__in=statuses).update(**fields)
        if started:
            broadcast.refresh_from_db()
            lanes.queue_fan_out(broadcast)
            details: dict[str, Any] = {"scheduled_at": scheduled_at} if scheduled_at else {}
            audit.record(
                "broadcast.sent",
                actor=by,
                target=f"broadcast {broadcast.pk}",
                municipality=broadcast_municipality(broadcast),
                subject=broadcast.subject,
                urgent=broadcast.urgent,
                **details,
            )
    return bool(started)


# How far ahead a send may be scheduled.
SCHEDULE_AHEAD_MAX = timedelta(days=365)


def schedule(broadcast: Broadcast, at: datetime, by: User | None = None) -> bool:
    """Have a draft (or a scheduled broadcast, again) leave at ``at`` (P7); False if it was
    already sent or cancelled. The sweep sends it when the time comes (send_due): the row is
    the schedule, so it holds across restarts. A time without a zone is the installation's."""
    if timezone.is_naive(at):
        at = timezone.make_aware(at)
    now = timezone.now()
    if at <= now:
        raise ValidationError({"at": _("This time has already passed. Choose a time in the future.")})
    if at > now + SCHEDULE_AHEAD_MAX:
        raise ValidationError({"at": _("A broadcast can be scheduled at most one year ahead.")})
    _refuse_an_empty_audience(broadcast)
    with transaction.atomic():
        scheduled = Broadcast.objects.filter(
            pk=broadcast.pk, status__in=[BroadcastStatus.DRAFT, BroadcastStatus.SCHEDULED]
        ).update(status=BroadcastStatus.SCHEDULED, send_at=at)
        if scheduled:
            broadcast.refresh_from_db()
            audit.record(
                "broadcast.scheduled",
                actor=by,
                target=f"broadcast {broadcast.pk}",
                municipality=broadcast_municipality(broadcast),
                subject=broadcast.subject,
                at=timezone.localtime(at).isoformat(),
            )
    return bool(scheduled)


def cancel(broadcast: Broadcast, by: User | None = None) -> bool:
    """Call off a scheduled broadcast before it leaves; False if it is not scheduled (any more):
    one that has started sending cannot be cancelled."""
    with transaction.atomic():
        cancelled = Broadcast.objects.filter(pk=broadcast.pk, status=BroadcastStatus.SCHEDULED).update(
            status=BroadcastStatus.CANCELLED, finished_at=timezone.now()
        )
        if cancelled:
            broadcast.refresh_from_db()
            audit.record(
                "broadcast.cancelled",
                actor=by,
                target=f"broadcast {broadcast.pk}",
                municipality=broadcast_municipality(broadcast),
                subject=broadcast.subject,
                at=timezone.localtime(broadcast.send_at).isoformat() if broadcast.send_at else "",
            )
    return bool(cancelled)


def send_due(now: datetime) -> int:
    """The sweep's step: start every scheduled broadcast whose time has come; how many.

    Safe on several machines at once: each start is a conditional update on the status. One
    whose time passed while nothing ran (the system was down) leaves at the next sweep.
    """
    due = Broadcast.objects.filter(status=BroadcastStatus.SCHEDULED, send_at__lte=now).order_by("send_at")
    started = 0
    for broadcast in due[:100]:
        assert broadcast.send_at is not None
        started += _start(
            broadcast,
            None,
            (BroadcastStatus.SCHEDULED,),
            scheduled_at=timezone.localtime(broadcast.send_at).isoformat(),
        )
    return started


def retry_failed(broadcast: Broadcast, by: User | None = None) -> int:
    """Offer the failed mails of a broadcast once more (``by`` a staff member); return how many."""
    with transaction.atomic():
        failed = Delivery.objects.filter(broadcast=broadcast, status=DeliveryStatus.FAILED).exclude(
            is_suppressed(OuterRef("email"))  # they would fail again
        )
        chunks = sorted(set(failed.values_list("chunk", flat=True)))
        count = failed.update(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now())
        if count:
            Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.SENDING, finished_at=None)
            broadcast.refresh_from_db()
            for chunk in chunks:
                lanes.queue_chunk(broadcast, chunk)
            audit.record(
                "broadcast.retried",
                actor=by,
                target=f"broadcast {broadcast.pk}",
                municipality=broadcast_municipality(broadcast),
                messages=count,
            )
    return count


@dataclass(frozen=True)
class Progress:
    status: str
    registrants: int
    messages: int
    sent: int
    failed: int
    pending: int
    suppressed: int = 0  # addresses of the audience not mailed: suppressed (P5)


def progress(broadcast: Broadcast) -> Progress:
    """Counts for the console and the API, from the indexes of open and failed mails only:
    whatever is written and neither is sent."""
    counts = Delivery.objects.filter(broadcast=broadcast).aggregate(
        open=Count("pk", filter=OPEN), failed=Count("pk", filter=Q(status=DeliveryStatus.FAILED))
    )
    # While the fan-out is still writing (its first chunk may be out already), count what is
    # there: Broadcast.registrant_count is written only when the fan-out ends. The classes'
    # counters hold the whole audience from the second slice on (fanout._count_groups); before
    # that, the registrants of the first chunk (the head: fanout.CHUNK_SIZE addresses, or one a
    # school when more schools) are counted.
    if broadcast.fanned_out_at is not None:
        messages, registrants = broadcast.message_count, broadcast.registrant_count
    else:
        messages = Delivery.objects.filter(broadcast=broadcast).count()
        groups = AudienceGroup.objects.filter(broadcast=broadcast)
        registrants = groups.aggregate(n=Sum("registrants"))["n"] or 0
        if not registrants and messages:
            recipients = Recipient.objects.filter(broadcast=broadcast).order_by()
            registrants = recipients.values("registrant").distinct().count()
    return Progress(
        status=broadcast.status,
        registrants=registrants,
        messages=messages,
        sent=messages - counts["open"] - counts["failed"],
        failed=counts["failed"],
        pending=counts["open"],
        suppressed=broadcast.suppressed_count,
    )

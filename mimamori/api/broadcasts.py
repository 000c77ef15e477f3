"""Broadcast endpoints: compose, send, watch, list deliveries and receipts, retry (S1, S15, P4).

Thin: targeting and sending do the work, and every broadcast is fetched through
mimamori.broadcasts.access, so one outside the token's scope is a 404.
"""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from datetime import datetime
from typing import Annotated, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.errors import ValidationError as RequestValidationError
from ninja.pagination import paginate

from mimamori.api.auth import staff_of
from mimamori.api.pagination import Pages
from mimamori.api.schemas import (
    BODY_ERRORS,
    MAX_ITEMS,
    MULTI_LINE,
    ONE_LINE,
    READ_ERRORS,
    Body,
    Code,
    Grade,
    Id,
    LocalTime,
    errors,
    line,
    lines,
)
from mimamori.broadcasts import access, mails, sending, targeting
from mimamori.broadcasts.models import (
    BODY_MAX,
    SUBJECT_MAX,
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
)
from mimamori.receipts import closing, statistics
from mimamori.registry import answers as answer_rules
from mimamori.registry.access import schools_for
from mimamori.text import MAX_BIGINT

router = Router(tags=["broadcasts"])

BroadcastId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
# One broadcast: 401, 422 for an id outside 1..2^63-1, 404 outside the token's scope.
ONE = {**READ_ERRORS, **errors(404)}


# --- shapes ---------------------------------------------------------------------------


class GroupIn(Body):
    grade: Grade
    class_name: Annotated[
        str,
        line(16, required=True, description="The class, folded as the registry does: 1組, １組, 1 are 1."),
        ONE_LINE,
    ]


class ScopeIn(Body):
    municipality: Code | None = Field(None, description="One municipality's code.")
    municipalities: list[Code] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Municipality codes (centre)."
    )
    schools: list[Id] = Field(default_factory=list, max_length=MAX_ITEMS, description="School ids.")
    grades: list[Grade] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Only these grades (1-9); all if empty."
    )
    classes: list[Annotated[str, line(16), ONE_LINE]] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Only these classes; all if empty."
    )
    groups: list[GroupIn] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description='Classes of a grade, e.g. [{"grade": 3, "class_name": "2"}, '
        '{"grade": 5, "class_name": "1"}]: with them the scope is the whole `grades` named plus '
        "these classes, and no other (3年2組 and 5年1組 reach just those two classes). `classes` "
        "beside them are crossed with `grades` into classes of a grade. Without them, `grades` × "
        "`classes`.",
    )


class BroadcastIn(Body):
    scope: ScopeIn = Field(description="Nothing named means the token's whole scope (the centre must name).")
    subject: Annotated[str, line(SUBJECT_MAX, required=True), ONE_LINE]
    body: Annotated[str, lines(BODY_MAX), MULTI_LINE]
    request_confirmation: bool
    urgent: bool = False
    reminder_minutes: list[Annotated[int, Field(ge=1, le=sending.REMINDER_MINUTES_MAX)]] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Automatic reminders to the unconfirmed, in minutes after sending (e.g. [30, 60]); "
        "they need request_confirmation.",
    )
    answers: list[Annotated[str, line(answer_rules.CHOICE_MAX, required=True), ONE_LINE]] = Field(
        default_factory=list,
        max_length=answer_rules.MAX_CHOICES,
        description="Answer choices guardians choose from instead of a bare read confirmation (安否確認), "
        'e.g. ["無事です", "けがをしています", "支援が必要です"]: 2 to 6 distinct choices of at most '
        f"{answer_rules.CHOICE_MAX} characters, or none. With choices the broadcast requests a read "
        "confirmation whatever request_confirmation says (answering confirms).",
    )


class GroupOut(Schema):
    grade: int
    class_name: str


class ScopeOut(Schema):
    municipalities: list[str]
    schools: list[int]
    grades: list[int] = Field(description="Whole grades when `groups` is not empty.")
    classes: list[str]
    groups: list[GroupOut] = Field(
        description="Classes of a grade; when not empty, the scope is the whole `grades` plus these."
    )


class Preview(Schema):
    registrants: int
    messages: int = Field(description="Distinct addresses: one mail each.")


class Counts(Schema):
    registrants: int
    messages: int
    sent: int
    failed: int
    pending: int
    suppressed: int = Field(
        description="Addresses of the audience that got no mail because they are suppressed (bounces)."
    )
    confirmed: int = Field(description="Registrants who confirmed they read it (any of their mails).")
    answers: dict[str, int] = Field(
        description="Registrants per answer choice, every choice named, e.g. "
        '{"無事です": 120, "けがをしています": 2, "支援が必要です": 1}; {} for a broadcast without '
        "choices. Those who have not answered: registrants − confirmed."
    )


class BroadcastSummary(Schema):
    id: int
    status: BroadcastStatus
    subject: str
    urgent: bool
    request_confirmation: bool
    reminder_minutes: list[int]
    reminders_sent: int
    answers: list[str] = Field(description="The answer choices (安否確認); [] for a bare read confirmation.")
    answers_closed_at: LocalTime | None = Field(
        description="When staff closed answering; null while guardians may still answer."
    )
    scope: ScopeOut
    created_at: LocalTime
    send_requested_at: LocalTime | None
    send_at: LocalTime | None = Field(
        description="When a scheduled broadcast leaves (or was to, if cancelled); null if never scheduled."
    )
    finished_at: LocalTime | None

    @staticmethod
    def resolve_scope(obj: Broadcast) -> ScopeOut:
        # .all() so that a list's prefetch is used.
        return ScopeOut(
            municipalities=sorted(m.code for m in obj.municipalities.all()),
            schools=sorted(s.pk for s in obj.schools.all()),
            grades=list(obj.grades),
            classes=list(obj.classes),
            groups=[GroupOut(grade=g, class_name=c) for g, c in targeting.groups_of(obj)],
        )


class Change(Schema):
    typed: str = Field(description="As staff wrote it, e.g. ①.")
    sent: str = Field(description="As the mail carries it, e.g. (1); 〓 where nothing can stand for it.")


class Rewriting(Schema):
    groups: list[str] = Field(
        description="The carrier groups (labels) whose mail is written in this charset."
    )
    charset: str = Field(description="E.g. ISO-2022-JP.")
    changes: list[Change]


def _rewritings(obj: Broadcast) -> list[Rewriting]:
    return [
        Rewriting(
            groups=found.groups,
            charset=found.charset,
            changes=[Change(typed=typed, sent=sent) for typed, sent in found.changes],
        )
        for found in mails.rewritings(obj.subject, obj.body)
    ]


REWRITINGS = (
    "What the character set of carrier groups whose mail is not UTF-8 changes in the subject and "
    "body (empty when nothing): check it before sending."
)


class DraftOut(BroadcastSummary):
    body: str
    preview: Preview
    rewritings: list[Rewriting] = Field(description=REWRITINGS)

    @staticmethod
    def resolve_rewritings(obj: Broadcast) -> list[Rewriting]:
        return _rewritings(obj)

    @staticmethod
    def resolve_preview(obj: Broadcast) -> Preview:
        reach = targeting.reach(obj)
        return Preview(registrants=reach.registrants, messages=reach.messages)


class BroadcastOut(BroadcastSummary):
    body: str
    counts: Counts
    rewritings: list[Rewriting] = Field(description=REWRITINGS)

    @staticmethod
    def resolve_rewritings(obj: Broadcast) -> list[Rewriting]:
        return _rewritings(obj)

    @staticmethod
    def resolve_counts(obj: Broadcast) -> Counts:
        progress = sending.progress(obj)
        return Counts(
            registrants=progress.registrants,
            messages=progress.messages,
            sent=progress.sent,
            failed=progress.failed,
            pending=progress.pending,
            suppressed=progress.suppressed,
            confirmed=statistics.confirmed_count(obj),
            answers=statistics.answer_counts(obj),
        )


class SendIn(Body):
    at: datetime | None = Field(
        None,
        strict=False,
        description="ISO 8601, in the future (at most a year ahead): the broadcast is `scheduled` and "
        "leaves then. Without it (or with no body), it is sent now.",
    )


class SendOut(Schema):
    id: int
    status: BroadcastStatus = Field(
        description="`sending` when sent now, `scheduled` when it leaves at `send_at`; "
        "`cancelled` after a cancel."
    )
    send_at: LocalTime | None = Field(description="When a scheduled broadcast leaves.")


class RetryOut(Schema):
    retried: int


class DeliveryOut(Schema):
    email: str
    status: DeliveryStatus
    attempts: int
    reply: str = Field(description="The SMTP server's last reply.")
    accepted_at: LocalTime | None
    registrants: list[int] = Field(description="The registrants this mail was sent for.")

    @staticmethod
    def resolve_registrants(obj: Delivery) -> list[int]:
        return sorted(r.registrant_id for r in obj.recipients.all())


class ReceiptOut(Schema):
    registrant: int
    school: int
    grade: int = Field(description="As when the broadcast was sent.")
    class_name: str = Field(description="As when the broadcast was sent.")
    confirmed_at: LocalTime | None = Field(description="The first confirmation; null if none yet.")
    answer: str | None = Field(
        description="The answer choice given (its text, the latest if changed); null if none yet or the "
        "broadcast offers no choices."
    )

    @staticmethod
    def resolve_registrant(obj: dict[str, Any]) -> int:
        return int(obj["registrant_id"])

    @staticmethod
    def resolve_school(obj: dict[str, Any]) -> int:
        return int(obj["school_id"])


class DeliveryFilter(Schema):
    status: DeliveryStatus | None = None


# --- endpoints ------------------------------------------------------------------------


@router.post("/broadcasts", response={201: DraftOut, **BODY_ERRORS})
def create_broadcast(request: HttpRequest, data: BroadcastIn) -> Status[Broadcast]:
    user = staff_of(request)
    codes = [data.scope.municipality] if data.scope.municipality else []
    try:
        scope = targeting.resolve_scope(
            user,
            municipality_codes=[*codes, *data.scope.municipalities],
            school_ids=data.scope.schools,
            grades=data.scope.grades,
            classes=data.scope.classes,
            groups=[(group.grade, group.class_name) for group in data.scope.groups],
        )
    except DjangoValidationError as error:
        raise _refused("scope", error) from None
    broadcast = sending.compose(
        user,
        subject=data.subject,
        body=data.body,
        scope=scope,
        urgent=data.urgent,
        request_confirmation=data.request_confirmation,
        reminder_minutes=data.reminder_minutes,
        answers=data.answers,
    )
    return Status(201, broadcast)


@router.get("/broadcasts", response={200: list[BroadcastSummary], **READ_ERRORS})
@paginate(Pages)
def list_broadcasts(request: HttpRequest) -> QuerySet[Broadcast]:
    return (
        access.broadcasts_for(staff_of(request))
        .prefetch_related("municipalities", "schools")
        .order_by("-created_at", "-pk")
    )


@router.get("/broadcasts/{broadcast_id}", response={200: BroadcastOut, **ONE})
def get_broadcast(request: HttpRequest, broadcast_id: BroadcastId) -> Broadcast:
    return access.get_broadcast(staff_of(request), broadcast_id)


@router.post("/broadcasts/{broadcast_id}/send", response={202: SendOut, **ONE, **BODY_ERRORS, **errors(409)})
def send_broadcast(
    request: HttpRequest, broadcast_id: BroadcastId, data: SendIn | None = None
) -> Status[SendOut]:
    """Send a draft now, or with `at` at that time (status `scheduled`, P7); a scheduled one
    can be sent now or scheduled again. 409 if it was sent or cancelled already; 422 for a
    time that has passed or is more than a year ahead."""
    user = staff_of(request)
    broadcast = access.get_broadcast(user, broadcast_id)
    at = data.at if data is not None else None
    try:
        done = sending.send(broadcast, by=user) if at is None else sending.schedule(broadcast, at, by=user)
    except sending.NoRecipients as refusal:
        # The draft stays a draft: 409 like a second send, with the reason.
        raise HttpError(409, refusal.messages[0]) from None
    if not done:
        raise HttpError(409, _("This broadcast has already been sent or cancelled."))
    return Status(202, _sent(broadcast))


@router.post("/broadcasts/{broadcast_id}/cancel", response={200: SendOut, **ONE, **errors(409)})
def cancel_broadcast(request: HttpRequest, broadcast_id: BroadcastId) -> SendOut:
    """Cancel a scheduled broadcast before it leaves (status `cancelled`). 409 for one that is
    not scheduled: a draft, or one that has started sending."""
    user = staff_of(request)
    broadcast = access.get_broadcast(user, broadcast_id)
    if not sending.cancel(broadcast, by=user):
        raise HttpError(409, _("Only a scheduled broadcast can be cancelled, before it is sent."))
    return _sent(broadcast)


def _sent(broadcast: Broadcast) -> SendOut:
    return SendOut(id=broadcast.pk, status=BroadcastStatus(broadcast.status), send_at=broadcast.send_at)


@router.get("/broadcasts/{broadcast_id}/deliveries", response={200: list[DeliveryOut], **ONE})
@paginate(Pages)
def list_deliveries(
    request: HttpRequest, broadcast_id: BroadcastId, filters: Query[DeliveryFilter]
) -> QuerySet[Delivery]:
    broadcast = access.get_broadcast(staff_of(request), broadcast_id)
    deliveries = Delivery.objects.filter(broadcast=broadcast).prefetch_related("recipients")
    if filters.status is not None:
        deliveries = deliveries.filter(status=filters.status)
    return deliveries.order_by("pk")


@router.get("/broadcasts/{broadcast_id}/receipts", response={200: list[ReceiptOut], **ONE})
@paginate(Pages)
def list_receipts(request: HttpRequest, broadcast_id: BroadcastId) -> QuerySet[Any, Any]:
    """Every registrant the broadcast reached, by school, grade, class and name."""
    user = staff_of(request)
    broadcast = access.get_broadcast(user, broadcast_id)
    rows = statistics.with_confirmed_at(statistics.targeted(broadcast, schools_for(user)), broadcast)
    return statistics.with_answer(rows, broadcast)


class ClosedOut(Schema):
    id: int
    answers_closed_at: LocalTime


@router.post("/broadcasts/{broadcast_id}/close-answers", response={200: ClosedOut, **ONE, **errors(409)})
def close_answers(request: HttpRequest, broadcast_id: BroadcastId) -> ClosedOut:
    """Close answering (「回答を締め切る」): guardians can no longer answer or change an answer;
    audited. 409 for a broadcast without answer choices, one not sent yet, or one closed already."""
    user = staff_of(request)
    broadcast = access.get_broadcast(user, broadcast_id)
    if not closing.close_answering(broadcast, by=user, request=request):
        if not broadcast.answers:
            raise HttpError(409, _("This broadcast offers no answer choices."))
        if broadcast.answers_closed_at is not None:
            raise HttpError(409, _("Answering is already closed."))
        raise HttpError(409, _("Answering can be closed once the broadcast has been sent."))
    assert broadcast.answers_closed_at is not None
    return ClosedOut(id=broadcast.pk, answers_closed_at=broadcast.answers_closed_at)


@router.post("/broadcasts/{broadcast_id}/retry", response={200: RetryOut, **ONE})
def retry_failed(request: HttpRequest, broadcast_id: BroadcastId) -> RetryOut:
    user = staff_of(request)
    broadcast = access.get_broadcast(user, broadcast_id)
    return RetryOut(retried=sending.retry_failed(broadcast, by=user))


# --- helpers --------------------------------------------------------------------------


def _refused(within: str, error: DjangoValidationError) -> RequestValidationError:
    """Domain refusals about part of the body, located under that part (e.g. body.scope.schools)."""
    return RequestValidationError(
        [
            {"loc": ["body", within, field], "msg": message, "type": "invalid"}
            for field, messages in error.message_dict.items()
            for message in messages
        ]
    )

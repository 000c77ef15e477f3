"""Gate endpoints (B6): staff register and revoke readers; a reader posts its passes.

``POST /gate-events`` takes a reader's token (``mgr_…``), never a staff token, and the staff
endpoints never take a reader's: StaffToken looks a token up among staff tokens only, and
ReaderToken among active readers only.
"""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from datetime import datetime
from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Field, Path, Router, Schema, Status
from ninja.errors import ValidationError
from ninja.security import HttpBearer

from mimamori.api.auth import staff_of
from mimamori.api.schemas import BODY_ERRORS, ONE_LINE, READ_ERRORS, Body, Id, LocalTime, errors, line
from mimamori.gates import passes, readers
from mimamori.gates.models import GateReader
from mimamori.registry import access
from mimamori.text import MAX_BIGINT

router = Router(tags=["gates"])

ReaderId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
# ISO 8601 with its offset, as a reader's clock writes it: 2026-04-08T07:58:03+09:00 or …Z.
AT_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]"
    r"(:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)


class ReaderToken(HttpBearer):
    """An active gate reader's token; anything else (a staff token too) is 401."""

    def authenticate(self, request: HttpRequest, token: str) -> GateReader | None:
        return readers.authenticate(token)


class ReaderIn(Body):
    school: Id
    name: Annotated[str, line(64, required=True), ONE_LINE]
    place: Annotated[str, line(64), ONE_LINE] = ""


class ReaderOut(Schema):
    id: int
    school: int
    name: str
    place: str
    active: bool
    created_at: LocalTime
    revoked_at: LocalTime | None
    last_posted_at: LocalTime | None

    @staticmethod
    def resolve_school(obj: GateReader) -> int:
        return obj.school_id

    @staticmethod
    def resolve_active(obj: GateReader) -> bool:
        return obj.is_active


class ReaderMade(ReaderOut):
    token: str = Field(description="The reader's bearer token for POST /gate-events, shown only this once.")


class GateEventIn(Body):
    id: Annotated[str, line(passes.MAX_ID, required=True), ONE_LINE] = Field(
        description="The reader's own id of the event; posting it again changes nothing."
    )
    tag: Annotated[str, line(passes.MAX_TAG, required=True), ONE_LINE]
    direction: Literal["in", "out"] = Field(description="in: 登校 (arrival), out: 下校 (departure).")
    at: Annotated[str, Field(min_length=16, max_length=40, pattern=AT_PATTERN)] = Field(
        description="When the tag was read: ISO 8601 with its UTC offset."
    )


class GateEventsIn(Body):
    events: list[GateEventIn] = Field(max_length=passes.MAX_EVENTS)


class GateEventsOut(Schema):
    accepted: int = Field(description="Events recorded now (mailed or not).")
    duplicates: int = Field(description="Events recorded before (same reader and id): nothing changed.")
    unknown_tags: int = Field(
        description="Accepted events whose tag no child of the reader's school carries."
    )


@router.post("/gate-readers", response={201: ReaderMade, **BODY_ERRORS, **errors(404)})
def register_reader(request: HttpRequest, data: ReaderIn) -> Status[GateReader]:
    """Register a gate reader of a school in the token's scope; its token is shown once. Audited."""
    user = staff_of(request)
    school = access.get_school(user, data.school)
    reader, token = readers.register(school, data.name, data.place, by=user)
    reader.token = token  # type: ignore[attr-defined]  # shown this once, never stored
    return Status(201, reader)


@router.get("/gate-readers", response={200: list[ReaderOut], **READ_ERRORS})
def list_readers(request: HttpRequest) -> list[GateReader]:
    return list(readers.readers_for(staff_of(request)).order_by("school_id", "name", "pk"))


@router.post("/gate-readers/{reader_id}/revoke", response={200: ReaderOut, **READ_ERRORS, **errors(404)})
def revoke_reader(request: HttpRequest, reader_id: ReaderId) -> GateReader:
    """Stop the reader's token from working (again: nothing changes). Audited."""
    user = staff_of(request)
    reader = readers.get_reader(user, reader_id)
    readers.revoke(reader, by=user)
    return reader


@router.post("/gate-events", auth=ReaderToken(), response={200: GateEventsOut, **BODY_ERRORS})
def post_gate_events(request: HttpRequest, data: GateEventsIn) -> GateEventsOut:
    """A reader's batch of passes: all recorded or, if one is malformed, none (422)."""
    reader = getattr(request, "auth", None)
    assert isinstance(reader, GateReader)
    events: list[passes.Event | dict[str, object]] = []
    for event in data.events:
        try:
            at: object = datetime.fromisoformat(event.at)
        except ValueError:
            at = event.at  # a date the calendar has not (30 February): passes.validate says so
        events.append({"id": event.id, "tag": event.tag, "direction": event.direction, "at": at})
    try:
        # By keyword: tests/test_audit_readable.py reads any record(x, …) call as the audit log's.
        result = passes.record(reader=reader, events=events)
    except passes.BatchRefused as refused:
        raise ValidationError(
            [
                {
                    "loc": ["body", "events"] if index is None else ["body", "events", index, name],
                    "msg": message,
                    "type": "invalid",
                }
                for index, name, message in refused.problems
            ]
        ) from None
    return GateEventsOut(
        accepted=result.accepted, duplicates=result.duplicates, unknown_tags=result.unknown_tags
    )

"""make_* helpers of the gate tests: readers and passes written directly (the passes' own recording
path is gates/passes.py, tested on its own), and times of a known week."""

from __future__ import annotations

import datetime
import itertools

from django.utils import timezone

from mimamori.gates.models import Direction, GatePass, GateReader, PassOutcome, new_reader_token
from mimamori.registry.models import Registrant, School

_events = itertools.count(1)

# A week of December 2026: Monday 7th to Sunday 13th; and 勤労感謝の日, Monday 23 November.
MONDAY = datetime.date(2026, 12, 7)
SATURDAY = datetime.date(2026, 12, 12)
HOLIDAY = datetime.date(2026, 11, 23)


def at(day: datetime.date, hour: int, minute: int = 0) -> datetime.datetime:
    """``day`` at that local time."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time(hour, minute)))


def make_reader(school: School) -> GateReader:
    _token, digest = new_reader_token()
    return GateReader.objects.create(school=school, name="正門", place="正門", token_digest=digest)


def make_pass(
    reader: GateReader,
    child: Registrant | None,
    when: datetime.datetime,
    *,
    direction: str = Direction.IN,
    outcome: str = PassOutcome.MAILED,
    recorded_at: datetime.datetime | None = None,
) -> GatePass:
    return GatePass.objects.create(
        reader=reader,
        event_id=f"e{next(_events)}",
        tag=child.tag_id if child is not None and child.tag_id else f"tag{next(_events)}",
        registrant=child,
        direction=direction,
        at=when,
        recorded_at=recorded_at or when,
        outcome=outcome,
    )

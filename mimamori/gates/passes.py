"""Recording what the gate readers post (B6): one batch of passes, in a handful of queries.

- A batch is checked whole first: one malformed event refuses it all and nothing is recorded, so
  a reader never half-posts its backlog and then cannot tell which half.
- A pass is recorded once per (reader, event id), whatever its age: the insert is
  ``ON CONFLICT DO NOTHING … RETURNING`` on the unique constraint, and only the rows it returns
  are mailed. Two posts of the same backlog racing (a reader retrying after a timeout) therefore
  mail once: the second insert waits for the first transaction and then finds the rows there.
- A tag reaches only the active children of the reader's own school; any other tag is recorded
  as unknown (registrant None) and listed for staff by unknown_tags().
- A read of the same child and direction within MIMAMORI_GATE_REPEAT_SECONDS of an earlier pass
  is a repeat (a child lingering at the gate): recorded, not mailed.
- A pass older than MIMAMORI_GATE_RECENT_MINUTES (a backlog from a reader that was offline) is
  recorded as old, not mailed: a mail saying 登校 7:58 at 10:30 helps nobody and alarms some.
  A pass more than FUTURE_TOLERANCE ahead of the server's clock is the reader's clock being
  wrong: the time it would mail cannot be trusted, so it is recorded as old too (staff see it).
- Otherwise each distinct address at the slots the child's guardian chose (GatePreference; all
  four without one), not suppressed, gets one gate_pass mail through the outbox on the gates
  queue, in the same transaction as the pass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Field, Max, OuterRef, Subquery
from django.utils import timezone

from mimamori import tasking, text
from mimamori.gates import mails
from mimamori.gates.models import (
    Direction,
    GateDayCount,
    GatePass,
    GatePreference,
    GateReader,
    PassOutcome,
)
from mimamori.gates.readers import posted
from mimamori.mail import outbox
from mimamori.registry.models import SLOTS, Address, AddressStatus, Registrant, RegistrantStatus, School

log = logging.getLogger(__name__)

KIND = "gate_pass"
# A reader posts every few seconds; a backlog of 1,000 is over an hour of one busy gate. A cap
# keeps one request's transaction (and the locks on the day's counters) short; a reader with more
# posts it in several batches.
MAX_EVENTS = 1000
MAX_ID = 64
MAX_TAG = 64
# Readers keep time by NTP, or by a clock set by hand; minutes ahead is a wrong clock.
FUTURE_TOLERANCE = timedelta(minutes=5)
_INSERT_CHUNK = 500


@dataclass(frozen=True)
class Event:
    id: str
    tag: str
    direction: str
    at: datetime


@dataclass
class Result:
    accepted: int = 0
    duplicates: int = 0
    unknown_tags: int = 0
    mails: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class BatchRefused(ValueError):
    """The batch is malformed; ``problems`` are (index, field, message), index None for the batch."""

    def __init__(self, problems: list[tuple[int | None, str, str]]) -> None:
        super().__init__("; ".join(f"event {i} {name}: {message}" for i, name, message in problems))
        self.problems = problems


def _one_line(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not 1 <= len(value) <= limit:
        return f"must be 1 to {limit} characters"
    if value.strip() != value or text.problem(value, multiline=False) is not None:
        return "must be one line of visible characters, without surrounding spaces"
    return None


def _moment(value: Any) -> datetime | str:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and 10 < len(value) <= 40:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return "must be an ISO 8601 date and time"
    else:
        return "must be an ISO 8601 date and time"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return "must carry its UTC offset (e.g. +09:00 or Z)"
    return moment


def validate(events: Sequence[Mapping[str, Any] | Event]) -> list[Event]:
    """The batch as Events, or BatchRefused naming every malformed value."""
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise BatchRefused([(None, "events", "must be a list")])
    if len(events) > MAX_EVENTS:
        raise BatchRefused([(None, "events", f"at most {MAX_EVENTS} events per post")])
    problems: list[tuple[int | None, str, str]] = []
    checked: list[Event] = []
    for index, raw in enumerate(events):
        if isinstance(raw, Event):
            raw = {"id": raw.id, "tag": raw.tag, "direction": raw.direction, "at": raw.at}
        if not isinstance(raw, Mapping):
            problems.append((index, "event", "must be an object"))
            continue
        for name, limit in (("id", MAX_ID), ("tag", MAX_TAG)):
            if (problem := _one_line(raw.get(name), limit)) is not None:
                problems.append((index, name, problem))
        if raw.get("direction") not in Direction.values:
            problems.append((index, "direction", "must be in or out"))
        moment = _moment(raw.get("at"))
        if isinstance(moment, str):
            problems.append((index, "at", moment))
        if not problems:
            assert isinstance(moment, datetime)
            checked.append(Event(raw["id"], raw["tag"], raw["direction"], moment))
    if problems:
        raise BatchRefused(problems)
    return checked


def record(
    reader: GateReader, events: Sequence[Mapping[str, Any] | Event], now: datetime | None = None
) -> Result:
    """Record one batch ``reader`` posted; mail the passes that are new, recent and known."""
    now = now or timezone.now()
    batch = validate(events)
    school = reader.school
    result = Result()
    # An id twice in one batch is the same event twice.
    unique: dict[str, Event] = {}
    for event in batch:
        unique.setdefault(event.id, event)
    result.duplicates = len(batch) - len(unique)
    events_in = sorted(unique.values(), key=lambda e: e.at)
    if not events_in:
        posted(reader, now)
        return result

    children = {
        r.tag_id: r
        for r in Registrant.objects.filter(
            school=school, status=RegistrantStatus.ACTIVE, tag_id__in={e.tag for e in events_in}
        ).only("pk", "tag_id", "child_name", "school_id", "status")
    }
    recent_from = now - timedelta(minutes=settings.MIMAMORI_GATE_RECENT_MINUTES)
    latest = now + FUTURE_TOLERANCE
    repeat = timedelta(seconds=settings.MIMAMORI_GATE_REPEAT_SECONDS)

    with transaction.atomic():
        earlier = _earlier_passes(children.values(), events_in, repeat)
        known = [e for e in events_in if e.tag in children]
        addresses = _addresses({children[e.tag].pk for e in known if recent_from <= e.at <= latest})
        rows: list[tuple[Event, Registrant | None, str, list[str]]] = []
        for event in events_in:
            child = children.get(event.tag)
            to: list[str] = []
            outcome: str
            if child is None:
                outcome = PassOutcome.UNKNOWN
            else:
                seen = earlier[(child.pk, event.direction)]
                is_repeat = any(event.at - repeat <= t <= event.at for t in seen)
                seen.append(event.at)
                if is_repeat:
                    outcome = PassOutcome.REPEAT
                elif not recent_from <= event.at <= latest:
                    outcome = PassOutcome.OLD
                    if event.at > latest:
                        log.warning("gate reader %s posts passes ahead of the clock: %s", reader.pk, event.at)
                else:
                    to = addresses.get(child.pk, [])
                    outcome = PassOutcome.MAILED if to else PassOutcome.NO_ADDRESS
            rows.append((event, child, outcome, to))

        inserted = _insert(reader, rows, now)
        counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
        for event, child, outcome, to in rows:
            pass_id = inserted.get(event.id)
            if pass_id is None:
                result.duplicates += 1
                continue
            result.accepted += 1
            result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
            if outcome == PassOutcome.UNKNOWN:
                result.unknown_tags += 1
            count = counts[(timezone.localdate(event.at), event.direction)]
            count[0] += 1
            if outcome == PassOutcome.MAILED:
                assert child is not None
                for email in to:
                    outbox.post(
                        _builder(child, reader, event, email),
                        kind=KIND,
                        domain=school.municipality.mail_domain,
                        target=f"gate pass {pass_id}",
                        municipality=school.municipality_id,
                        to=email,
                        queue=tasking.GATES,
                    )
                count[1] += len(to)
                result.mails += len(to)
        _count(school, counts)
        posted(reader, now)
    return result


def _builder(child: Registrant, reader: GateReader, event: Event, email: str) -> Any:
    return lambda: mails.gate_pass(child, reader, event.direction, event.at, email)


def _earlier_passes(
    children: Iterable[Registrant], events: Sequence[Event], repeat: timedelta
) -> defaultdict[tuple[int, str], list[datetime]]:
    """The recorded passes of these children near the batch's times, by (child, direction)."""
    found: defaultdict[tuple[int, str], list[datetime]] = defaultdict(list)
    ids = [child.pk for child in children]
    if not ids:
        return found
    rows = GatePass.objects.filter(
        registrant_id__in=ids, at__gte=events[0].at - repeat, at__lte=events[-1].at
    ).values_list("registrant_id", "direction", "at")
    for registrant_id, direction, at in rows:
        found[(registrant_id, direction)].append(at)
    return found


def _addresses(registrant_ids: set[int]) -> dict[int, list[str]]:
    """The addresses each child's gate mails go to: the chosen slots (all four without a choice),
    not suppressed (mail to them fails again, P5), each address once."""
    if not registrant_ids:
        return {}
    chosen = dict(
        GatePreference.objects.filter(registrant_id__in=registrant_ids).values_list("registrant_id", "slots")
    )
    found: dict[int, list[str]] = {}
    rows = (
        Address.objects.filter(registrant_id__in=registrant_ids)
        .exclude(status=AddressStatus.SUPPRESSED)
        .order_by("registrant_id", "slot")
        .values_list("registrant_id", "slot", "email")
    )
    for registrant_id, slot, email in rows:
        if slot not in chosen.get(registrant_id, SLOTS):
            continue
        to = found.setdefault(registrant_id, [])
        if email.lower() not in (known.lower() for known in to):
            to.append(email)
    return found


def _insert(
    reader: GateReader, rows: Sequence[tuple[Event, Registrant | None, str, list[str]]], now: datetime
) -> dict[str, int]:
    """Insert the passes that are new; their ids by event id (the others were there already)."""
    meta = GatePass._meta
    names = ["reader", "event_id", "tag", "registrant", "direction", "at", "recorded_at", "outcome", "mails"]
    fields = [cast(Field[Any, Any], meta.get_field(name)) for name in names]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(meta.db_table)
    event_column = connection.ops.quote_name("event_id")
    inserted: dict[str, int] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows[start : start + _INSERT_CHUNK]
            params: list[Any] = []
            for event, child, outcome, to in chunk:
                values = [
                    reader.pk,
                    event.id,
                    event.tag,
                    child.pk if child else None,
                    event.direction,
                    event.at,
                    now,
                    outcome,
                    len(to) if outcome == PassOutcome.MAILED else 0,
                ]
                params.extend(
                    f.get_db_prep_value(v, connection, prepared=False)
                    for f, v in zip(fields, values, strict=True)
                )
            placeholders = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {table} ({columns}) VALUES {placeholders} "  # noqa: S608 (names from the model)
                f"ON CONFLICT DO NOTHING RETURNING id, {event_column}",
                params,
            )
            inserted.update((event_id, pk) for pk, event_id in cursor.fetchall())
    return inserted


def _count(school: School, counts: Mapping[tuple[date, str], Sequence[int]]) -> None:
    """Add to the day's counters, in one statement per row (an upsert: the first pass of the day
    creates the row, and readers posting at once add to it without losing a count)."""
    if not counts:
        return
    meta = GateDayCount._meta
    table = connection.ops.quote_name(meta.db_table)
    day_field = cast(Field[Any, Any], meta.get_field("day"))
    with connection.cursor() as cursor:
        for (day, direction), (passes, mailed) in sorted(counts.items()):
            cursor.execute(
                f"INSERT INTO {table} (school_id, day, direction, passes, mails) "  # noqa: S608
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (school_id, day, direction) "
                f"DO UPDATE SET passes = {table}.passes + excluded.passes, "
                f"mails = {table}.mails + excluded.mails",
                [
                    school.pk,
                    day_field.get_db_prep_value(day, connection, prepared=False),
                    direction,
                    passes,
                    mailed,
                ],
            )


@dataclass(frozen=True)
class UnknownTag:
    tag: str
    count: int
    last_seen: datetime
    reader: GateReader | None


def unknown_tags(school: School) -> list[UnknownTag]:
    """Tags the school's readers read that no active child of the school carries: a new tag
    not yet entered, a lost one, a child of another school. Most recent first."""
    passes = GatePass.objects.filter(reader__school=school, registrant__isnull=True)
    assigned = Registrant.objects.filter(school=school, status=RegistrantStatus.ACTIVE).exclude(tag_id="")
    last_reader = passes.filter(tag=OuterRef("tag")).order_by("-at", "-pk").values("reader_id")[:1]
    rows = list(
        passes.exclude(tag__in=assigned.values("tag_id"))
        .values("tag")
        .annotate(count=Count("pk"), last_seen=Max("at"), last_reader=Subquery(last_reader))
        .order_by("-last_seen", "tag")
    )
    readers = GateReader.objects.in_bulk({row["last_reader"] for row in rows})
    return [
        UnknownTag(row["tag"], row["count"], row["last_seen"], readers.get(row["last_reader"]))
        for row in rows
    ]

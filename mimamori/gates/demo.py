"""The demo's gate readers and passes (a step of registry/demo.py's load_demo()).

緑小学校 has two readers, registered by its staff weeks ago, and the children of its youngest
grades carry tags (entered with the roster, registry/demo.py). Their passes of the latest
school day whose morning has begun (today from 8:00 on a weekday, else the weekday before), up
to the moment the demo is loaded, are written as passes.record() leaves them when each read is
posted a few seconds after it: a pass per read (a second read of the same child at the gate
within the repeat window is a repeat; a tag no child carries is unknown), mailed to each
address preferences.gate_addresses() gives (none: "no address", a guardian still to register),
the day's counters (GateDayCount), and per mail an outbox row as the outbox leaves a mail the
relay accepted: sent, its bytes dropped. Building a thousand mails only to drop their bytes
took seconds, so the rows are written directly; tests/test_demo.py recounts them against the
passes and the addresses.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from django.conf import settings
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.gates import passes, readers
from mimamori.gates.models import Direction, GateDayCount, GatePass, GateReader, PassOutcome, new_reader_token
from mimamori.gates.preferences import gate_addresses
from mimamori.gates.readers import reader_target
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry import demo
from mimamori.registry.models import Registrant, RegistrantStatus, School

READERS = [("正門", "正門の左の柱"), ("東門", "東門の内側、傘立ての横")]
# A tag a reader read that no child carries yet: a new one the school has not entered.
UNKNOWN_TAG = "0114FFEE0012AB34"
ABSENT = 0.04
REPEAT = 0.03  # read twice at the gate (a child lingering, or both readers)
MORNING = (8, 0)  # before this on a weekday, most of the day's arrivals are still to come


def load_gates(now: datetime) -> None:
    rng = random.Random(demo.SEED + 2)
    school = School.objects.select_related("municipality").get(
        sender_local_part=demo.GATE_SCHOOL, municipality__code=demo.MUNICIPALITIES[0][0]
    )
    staff = User.objects.get(username="midori")
    installed = demo.local_moment(now, 40, 15, 30)
    demo.staff_login(staff, installed - timedelta(minutes=6))
    installed_readers = []
    for index, (name, place) in enumerate(READERS):
        _token, digest = new_reader_token()  # shown once, to whoever set the reader up
        reader = GateReader(
            school=school,
            name=name,
            place=place,
            token_digest=digest,
            created_by=staff,
            created_at=installed + timedelta(minutes=index * 3),
        )
        reader.full_clean()
        reader.save()
        installed_readers.append(reader)
        demo.record_past(
            reader.created_at,
            "gate_reader.registered",
            actor=staff,
            target=reader_target(reader),
            municipality=school.municipality,
            ip_address=demo.STAFF_ADDRESSES["midori"],
            school=school.pk,
            place=reader.place,
        )
    day = _pass_day(now)
    children = list(
        Registrant.objects.filter(school=school, status=RegistrantStatus.ACTIVE)
        .exclude(tag_id="")
        .order_by("grade", "class_name", "pk")
        .only("pk", "tag_id", "grade")
    )
    latest = now - timedelta(minutes=1)
    events = sorted(
        (pair for pair in _events(rng, day, installed_readers, children) if pair[1].at <= latest),
        key=lambda pair: pair[1].at,
    )
    _record(rng, school, events, {child.tag_id: child.pk for child in children})


def _record(
    rng: random.Random,
    school: School,
    events: list[tuple[GateReader, passes.Event]],
    children: dict[str, int],
) -> None:
    """The passes, their mails and the day's counters, as passes.record() writes them for
    each pass posted a few seconds after it was read."""
    repeat = timedelta(seconds=settings.MIMAMORI_GATE_REPEAT_SECONDS)
    addresses = gate_addresses(children.values())
    seen: dict[tuple[int, str], datetime] = {}
    rows = []
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for reader, event in events:
        child = children.get(event.tag)
        recorded = event.at + timedelta(seconds=rng.randrange(2, 6))
        to: list[str] = []
        if child is None:
            outcome = PassOutcome.UNKNOWN
        elif (last := seen.get((child, event.direction))) is not None and event.at - last <= repeat:
            outcome = PassOutcome.REPEAT
        else:
            to = addresses.get(child, [])
            outcome = PassOutcome.MAILED if to else PassOutcome.NO_ADDRESS
        if child is not None:
            seen[child, event.direction] = event.at
        count = counts[timezone.localdate(event.at), event.direction]
        if outcome != PassOutcome.REPEAT:
            count[0] += 1
        count[1] += len(to)
        rows.append((reader, event, child, outcome, recorded, to))
    demo.insert_rows(
        GatePass,
        (
            {
                "reader": reader.pk,
                "event_id": event.id,
                "tag": event.tag,
                "registrant": child,
                "direction": event.direction,
                "at": event.at,
                "recorded_at": recorded,
                "outcome": outcome,
                "mails": len(to),
            }
            for reader, event, child, outcome, recorded, to in rows
        ),
    )
    ids = dict(
        GatePass.objects.filter(reader__school=school).values_list("event_id", "pk")
    )  # event ids are unique across the demo's readers
    municipality = school.municipality
    demo.insert_rows(
        OutgoingMail,
        (
            {
                "kind": passes.KIND,
                "target": f"gate pass {ids[event.id]}",
                "municipality": municipality.pk,
                "to": email,
                "envelope_domain": municipality.mail_domain,
                "message": b"",
                "status": OutgoingStatus.SENT,
                "attempts": 1,
                "next_attempt_at": recorded,
                "created_at": recorded,
                # The batch's mails leave together over one connection (outbox.send_together).
                "sent_at": recorded + timedelta(milliseconds=300 + 40 * index),
            }
            for _reader, event, _child, _outcome, recorded, to in rows
            for index, email in enumerate(to)
        ),
    )
    demo.insert_rows(
        GateDayCount,
        (
            {"school": school.pk, "day": day, "direction": direction, "passes": n, "mails": mailed}
            for (day, direction), (n, mailed) in sorted(counts.items())
        ),
    )
    for reader in {reader for reader, *_rest in rows}:
        last = max(recorded for r, _e, _c, _o, recorded, _t in rows if r == reader)
        readers.posted(reader, last)


def _pass_day(now: datetime) -> date:
    """Today, if it is a weekday whose morning has begun; else the weekday before. (Not the
    school calendar's national holidays: loading the holidays package takes most of a second,
    the whole demo's budget. A demo loaded the day after a holiday shows that day's passes.)"""
    local = timezone.localtime(now)
    day = local.date()
    if day.weekday() < 5 and (local.hour, local.minute) >= MORNING:
        return day
    day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _at(rng: random.Random, day: date, start: tuple[int, int], end: tuple[int, int], peak: float) -> datetime:
    begin = timezone.make_aware(datetime(day.year, day.month, day.day, *start))
    span = (end[0] - start[0]) * 3600 + (end[1] - start[1]) * 60
    return begin + timedelta(seconds=int(rng.triangular(0, span, span * peak)))


def _events(
    rng: random.Random, day: date, readers: list[GateReader], children: list[Registrant]
) -> Iterator[tuple[GateReader, passes.Event]]:
    """(reader, event) of every pass of ``day``: arrivals 7:30–8:15, the youngest leaving first."""
    count = 0

    def event(reader: GateReader, tag: str, direction: str, at: datetime) -> tuple[GateReader, passes.Event]:
        nonlocal count
        count += 1
        return reader, passes.Event(f"{reader.pk}-{day:%Y%m%d}-{count:05d}", tag, direction, at)

    main, side = readers
    for child in children:
        if rng.random() < ABSENT and child.tag_id != demo.GUARDIAN_TAG:  # the demo guardian's came
            continue
        gate = main if rng.random() < 0.7 else side
        arrival = _at(rng, day, (7, 30), (8, 15), 0.6)
        leaving = (14, 45) if child.grade <= 2 else (15, 25)
        departure = _at(rng, day, leaving, (leaving[0], leaving[1] + 30), 0.3)
        for direction, at in ((Direction.IN, arrival), (Direction.OUT, departure)):
            yield event(gate, child.tag_id, direction, at)
            if rng.random() < REPEAT:
                other = side if gate == main else main
                yield event(other, child.tag_id, direction, at + timedelta(seconds=rng.randrange(3, 60)))
    yield event(main, UNKNOWN_TAG, Direction.IN, _at(rng, day, (7, 40), (8, 10), 0.5))
    yield event(main, UNKNOWN_TAG, Direction.OUT, _at(rng, day, (14, 45), (15, 15), 0.5))

"""What staff read about confirmations (S15, P2) and answers (B1): counts, the tally per answer,
the curve over time, who is missing, who chose what.

Counts come from the AudienceGroup counters that record_confirmation keeps, and the curve from
Receipt through its (broadcast, confirmed_at) index, grouped in the database; nothing here
reads deliveries, so a page that polls every two seconds costs the same for 100 or 100,000
registrants. The tally per answer reads the answer_0 … answer_5 counters that record_answers
keeps on the same rows, beside the confirmed counter, never the receipts: while a city answers
after a quake the page polls every two seconds. Who is targeted, and in which school, grade
and class, is as it was when the broadcast was sent (the group of each Recipient row); names
and addresses are as they are now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Case, CharField, Count, Exists, F, OuterRef, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import TruncDay, TruncHour, TruncMinute
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Recipient
from mimamori.broadcasts.models import answer_counts as counted
from mimamori.receipts.models import Receipt
from mimamori.registry.models import Address, School

# The curve keeps at most this many points; finer buckets are merged in Python.
MAX_POINTS = 240
# How long after its end a bucket of the curve is taken as complete, and how long it is kept.
SETTLED = timedelta(minutes=2)
SETTLED_CACHE_SECONDS = 3600


def rate(confirmed: int, registrants: int) -> float:
    return confirmed / registrants if registrants else 0.0


@dataclass
class Tally:
    registrants: int = 0
    confirmed: int = 0
    # Registrants per answer (index into Broadcast.answers); empty for a bare confirmation.
    answers: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return rate(self.confirmed, self.registrants)

    @property
    def unanswered(self) -> int:
        """No answer yet: answering is confirming, so the targeted less the confirmed (never
        below zero, even in the second before the fan-out has counted a class)."""
        return max(self.registrants - self.confirmed, 0)

    def add(self, registrants: int, confirmed: int, answers: dict[int, int] | None = None) -> None:
        self.registrants += registrants
        self.confirmed += confirmed
        for answer, count in (answers or {}).items():
            self.answers[answer] = self.answers.get(answer, 0) + count


@dataclass
class ClassRow(Tally):
    group_id: int = 0
    class_name: str = ""


@dataclass
class GradeRow(Tally):
    grade: int = 0
    classes: list[ClassRow] = field(default_factory=list)


@dataclass
class SchoolRow(Tally):
    school: School | None = None
    grades: list[GradeRow] = field(default_factory=list)


@dataclass
class Statistics(Tally):
    schools: list[SchoolRow] = field(default_factory=list)


def statistics(broadcast: Broadcast, schools: QuerySet[School], opened: int | None = None) -> Statistics:
    """Targeted and confirmed registrants, in total and per school, and per grade and class for
    the school `opened` (or the only one). A city's broadcast has a thousand classes and more:
    the schools' sums come from the database, and only one school's classes become rows."""
    groups = AudienceGroup.objects.filter(broadcast=broadcast, school__in=schools.values("pk")).order_by()
    # The answer counters are summed per school by the database, as the confirmed are; they
    # stay 0 for a bare confirmation.
    sums = list(
        groups.values("school_id")
        .annotate(r=Sum("registrants"), c=Sum("confirmed"), **_answer_sums())
        .values_list("school_id", "r", "c", *ANSWER_SUMS)
    )
    by_id = School.objects.select_related("municipality").in_bulk({row[0] for row in sums})
    if len(sums) == 1:
        opened = sums[0][0]
    total = Statistics()
    for school_id, registrants, confirmed, *answers in sorted(
        sums, key=lambda row: (by_id[row[0]].name, row[0])
    ):
        school = SchoolRow(registrants=registrants, confirmed=confirmed, school=by_id[school_id])
        school.add(0, 0, counted(answers))
        total.schools.append(school)
        total.add(registrants, confirmed, counted(answers))
        if school_id == opened:
            school.grades = _grades(groups.filter(school_id=school_id))
    return total


# The sums of the answer counters, named apart from the columns (an annotation may not take a
# field's name).
ANSWER_SUMS = tuple(f"{name}_sum" for name in AudienceGroup.ANSWER_FIELDS)


def _answer_sums() -> dict[str, Sum]:
    return {f"{name}_sum": Sum(name) for name in AudienceGroup.ANSWER_FIELDS}


def _grades(groups: QuerySet[AudienceGroup]) -> list[GradeRow]:
    grades: list[GradeRow] = []
    rows = groups.order_by("grade", "class_name").values_list(
        "pk", "grade", "class_name", "registrants", "confirmed", *AudienceGroup.ANSWER_FIELDS
    )
    for group_id, grade_number, class_name, registrants, confirmed, *answers in rows:
        if not grades or grades[-1].grade != grade_number:
            grades.append(GradeRow(grade=grade_number))
        klass = ClassRow(
            registrants=registrants, confirmed=confirmed, group_id=group_id, class_name=class_name
        )
        klass.add(0, 0, counted(answers))
        grades[-1].classes.append(klass)
        grades[-1].add(registrants, confirmed, counted(answers))
    return grades


def confirmed_count(broadcast: Broadcast) -> int:
    """Registrants confirmed so far, from the counters."""
    return sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True))


def answer_counts(broadcast: Broadcast) -> dict[str, int]:
    """Registrants per answer choice over the whole broadcast, every choice named (0 if none
    chose it), from the counters; {} for a bare confirmation."""
    if not broadcast.answers:
        return {}
    sums = AudienceGroup.objects.filter(broadcast=broadcast).order_by().aggregate(**_answer_sums())
    return {choice: sums[f"answer_{index}_sum"] or 0 for index, choice in enumerate(broadcast.answers)}


@dataclass(frozen=True)
class Point:
    at: datetime
    confirmed: int  # cumulative


@dataclass(frozen=True)
class Timeline:
    start: datetime
    end: datetime
    step: timedelta
    points: list[Point]


def sent_at(broadcast: Broadcast) -> datetime:
    return broadcast.send_requested_at or broadcast.fanned_out_at or broadcast.created_at


def timeline(broadcast: Broadcast, schools: QuerySet[School], now: datetime | None = None) -> Timeline:
    """Cumulative confirmations since the broadcast was sent, bucketed by the database."""
    start = sent_at(broadcast)
    now = now or timezone.now()
    span = max(now - start, timedelta(minutes=1))
    # Buckets the database can make on SQLite and PostgreSQL alike; a month-old broadcast
    # is drawn by day rather than returning tens of thousands of minutes on each poll.
    if span <= timedelta(hours=12):
        trunc: Any = TruncMinute
        size = timedelta(minutes=1)
    elif span <= timedelta(days=10):
        trunc, size = TruncHour, timedelta(hours=1)
    else:
        trunc, size = TruncDay, timedelta(days=1)
    receipts = Receipt.objects.filter(broadcast=broadcast)
    out_of_scope = AudienceGroup.objects.filter(broadcast=broadcast).exclude(school__in=schools.values("pk"))
    scope = "all"
    if out_of_scope.exists():
        # Not reachable through broadcasts.access today (a broadcast is shown only to staff whose
        # scope holds all of its schools), but the curve must never count other schools' children.
        receipts = receipts.filter(
            Exists(
                Recipient.objects.filter(
                    broadcast=broadcast,
                    registrant=OuterRef("registrant"),
                    group__school__in=schools.values("pk"),
                )
            )
        )
        scope = ",".join(str(pk) for pk in sorted(schools.values_list("pk", flat=True)))
    buckets = _buckets(receipts, trunc, size, f"{broadcast.pk}:{trunc.kind}:{scope}", now)
    step = max(span / MAX_POINTS, timedelta(minutes=1))
    points: list[Point] = []
    running = 0
    for bucket, count in buckets:
        running += count
        at = max(bucket, start)
        # Merge buckets closer than one step so the curve stays small.
        if points and at - points[-1].at < step:
            points[-1] = Point(points[-1].at, running)
        else:
            points.append(Point(at, running))
    end = max(now, points[-1].at if points else now)
    return Timeline(start=start, end=end, step=step, points=points)


def _buckets(
    receipts: QuerySet[Receipt], trunc: Any, size: timedelta, key: str, now: datetime
) -> list[tuple[datetime, int]]:
    """(bucket start, confirmations) in time order, counted by the database.

    A bucket that ended more than SETTLED ago no longer changes (a receipt is written the
    moment it is confirmed), so those are kept in this process's cache and only the receipts
    after them are counted again on each poll: an hour after a city's broadcast the page would
    otherwise count several hundred thousand receipts every two seconds.
    """
    cache_key = f"mimamori:receipt-buckets:{key}"
    through, settled = cache.get(cache_key) or (None, [])
    recent = receipts if through is None else receipts.filter(confirmed_at__gte=through)
    rows = (
        recent.annotate(bucket=trunc("confirmed_at"))
        .order_by()
        .values("bucket")
        .annotate(n=Count("pk"))
        .order_by("bucket")
        .values_list("bucket", "n")
    )
    buckets: list[tuple[datetime, int]] = settled + list(rows)
    final = [(bucket, n) for bucket, n in buckets if bucket + size <= now - SETTLED]
    if final and final[-1][0] + size != through:
        cache.set(cache_key, (final[-1][0] + size, final), SETTLED_CACHE_SECONDS)
    return buckets


def _slot(slot: int) -> Subquery:
    # order_by(): Address's default ordering would join the registrant and its school per row.
    address = Address.objects.filter(registrant=OuterRef("registrant"), slot=slot).order_by()
    return Subquery(address.values("email")[:1])


def targeted(broadcast: Broadcast, schools: QuerySet[School]) -> QuerySet[Recipient, Any]:
    """One row per targeted registrant within the schools given, ordered for reading.

    A registrant has a Recipient row per address; all of them carry the same group, so DISTINCT
    over these columns gives one row per registrant on every database.
    """
    return (
        Recipient.objects.filter(broadcast=broadcast, group__school__in=schools.values("pk"))
        .order_by()
        .values(
            "registrant_id",
            school_id=F("group__school_id"),
            school_name=F("group__school__name"),
            grade=F("group__grade"),
            class_name=F("group__class_name"),
            child_name=F("registrant__child_name"),
            child_name_kana=F("registrant__child_name_kana"),
        )
        .distinct()
        .order_by(
            "school_name",
            "school_id",
            "grade",
            "class_name",
            "child_name_kana",
            "child_name",
            "registrant_id",
        )
    )


def with_confirmed_at(rows: QuerySet[Recipient, Any], broadcast: Broadcast) -> QuerySet[Any, Any]:
    receipt = Receipt.objects.filter(broadcast=broadcast, registrant=OuterRef("registrant"))
    return rows.annotate(confirmed_at=Subquery(receipt.values("confirmed_at")[:1]))


def unconfirmed(broadcast: Broadcast, schools: QuerySet[School]) -> QuerySet[Recipient, Any]:
    """The targeted registrants without a receipt."""
    receipt = Receipt.objects.filter(broadcast=broadcast, registrant=OuterRef("registrant"))
    return targeted(broadcast, schools).filter(~Exists(receipt))


def answered(broadcast: Broadcast, schools: QuerySet[School], answer: int) -> QuerySet[Recipient, Any]:
    """The targeted registrants whose answer now is ``answer`` (e.g. everyone who chose
    支援が必要です), with the time of that answer."""
    receipt = Receipt.objects.filter(broadcast=broadcast, registrant=OuterRef("registrant"), answer=answer)
    return (
        targeted(broadcast, schools)
        .filter(Exists(receipt))
        .annotate(answered_at=Subquery(receipt.values("answered_at")[:1]))
    )


def with_answer(rows: QuerySet[Any, Any], broadcast: Broadcast) -> QuerySet[Any, Any]:
    """The rows with ``answer``: the text of the choice each registrant gave, None if none (the
    database maps the index, so a page of rows stays one query)."""
    receipt = Receipt.objects.filter(broadcast=broadcast, registrant=OuterRef("registrant"))
    if not broadcast.answers:
        return rows.annotate(answer=Value(None, output_field=CharField()))
    rows = rows.annotate(answer_index=Subquery(receipt.values("answer")[:1]))
    return rows.annotate(
        answer=Case(
            *(When(answer_index=index, then=Value(choice)) for index, choice in enumerate(broadcast.answers)),
            default=Value(None),
            output_field=CharField(),
        )
    )


def with_addresses(rows: QuerySet[Recipient, Any]) -> QuerySet[Recipient, Any]:
    """The rows with the registrants' current slot 1 and 2 addresses, for a full export.

    A page of rows takes slot_addresses instead: computed here, the lookups would run for
    every row before the database sorts and cuts out the page.
    """
    return rows.annotate(address1=_slot(1), address2=_slot(2))


def slot_addresses(registrant_ids: list[int]) -> dict[int, dict[int, str]]:
    """Current slot 1 and 2 addresses of the given registrants (one query)."""
    found: dict[int, dict[int, str]] = {pk: {} for pk in registrant_ids}
    rows = Address.objects.filter(registrant__in=registrant_ids, slot__in=(1, 2)).order_by()
    for registrant_id, slot, email in rows.values_list("registrant_id", "slot", "email"):
        found[registrant_id][slot] = email
    return found


def mask_address(address: str | None) -> str:
    """ta***@docomo.ne.jp: enough for staff to tell a household's addresses apart on the phone,
    not enough to write to them from a printout or a forwarded CSV (P2)."""
    if not address:
        return ""
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    shown = local[:2] if len(local) > 4 else local[:1]
    return f"{shown}***{at}{domain}"

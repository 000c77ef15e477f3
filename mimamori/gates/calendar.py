"""The school calendar (B11): which dates are school days, so that the attendance check runs, and
tells guardians, only when children are expected at the gate.

The default is Japan's: Monday to Friday, except the national holidays (祝日, 振替休日, 国民の休日)
as the ``holidays`` package knows them. A school's SchoolDay entries override the default for one
date: a closed weekday (臨時休校, 開校記念日, the days of a long vacation) or an open Saturday
(土曜授業, 学校公開).
"""

from __future__ import annotations

import datetime
from functools import lru_cache

import holidays
from django.db import transaction
from django.http import HttpRequest

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.gates.models import SchoolDay
from mimamori.registry.models import School

# Staff may mark a span at once (a vacation); longer spans are refused as a likely typo.
MAX_SPAN_DAYS = 62


@lru_cache(maxsize=8)
def _national(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("JP", years=year, language="ja")


def national_holiday(day: datetime.date) -> str:
    """The holiday's Japanese name ("" on an ordinary day)."""
    return str(_national(day.year).get(day) or "")


def default_school_day(day: datetime.date) -> bool:
    return day.weekday() < 5 and not national_holiday(day)


def is_school_day(school: School, day: datetime.date) -> bool:
    entry = SchoolDay.objects.filter(school=school, day=day).values_list("open", flat=True).first()
    return default_school_day(day) if entry is None else entry


def school_days(schools: list[School], day: datetime.date) -> set[int]:
    """The ids of the schools for which ``day`` is a school day: one query for all of them."""
    entries = dict(SchoolDay.objects.filter(school__in=schools, day=day).values_list("school_id", "open"))
    default = default_school_day(day)
    return {school.pk for school in schools if entries.get(school.pk, default)}


def entries(school: School, start: datetime.date) -> list[SchoolDay]:
    return list(SchoolDay.objects.filter(school=school, day__gte=start).order_by("day"))


def holidays_between(start: datetime.date, end: datetime.date) -> list[tuple[datetime.date, str]]:
    days: list[tuple[datetime.date, str]] = []
    for year in range(start.year, end.year + 1):
        days.extend((day, str(name)) for day, name in _national(year).items() if start <= day <= end)
    return sorted(days)


def set_days(
    school: School,
    first: datetime.date,
    last: datetime.date,
    *,
    open_: bool,
    note: str,
    by: User | None,
    request: HttpRequest | None = None,
) -> int:
    """Mark every date from ``first`` to ``last`` closed (or open); a date whose default already
    says so gets no entry (an existing entry saying otherwise is removed). Returns the dates changed."""
    if last < first or (last - first).days >= MAX_SPAN_DAYS:
        raise ValueError("span")
    changed = []
    with transaction.atomic():
        day = first
        while day <= last:
            current = SchoolDay.objects.filter(school=school, day=day).first()
            before = default_school_day(day) if current is None else current.open
            if default_school_day(day) == open_:
                if current is not None:
                    current.delete()
            else:
                SchoolDay.objects.update_or_create(
                    school=school, day=day, defaults={"open": open_, "note": note}
                )
            if before != open_ or (current is not None and current.note != note):
                changed.append(day.isoformat())
            day += datetime.timedelta(days=1)
        if changed:
            record(
                "gates.calendar_changed",
                actor=by,
                target=f"school {school.pk}",
                municipality=school.municipality_id,
                request=request,
                days=changed,
                open=open_,
                note=note,
            )
    return len(changed)


def remove_day(
    school: School, day: datetime.date, *, by: User | None, request: HttpRequest | None = None
) -> bool:
    """Back to the default for that date."""
    with transaction.atomic():
        entry = SchoolDay.objects.filter(school=school, day=day).first()
        if entry is None:
            return False
        entry.delete()
        record(
            "gates.calendar_entry_removed",
            actor=by,
            target=f"school {school.pk}",
            municipality=school.municipality_id,
            request=request,
            day=day.isoformat(),
            open=entry.open,
        )
    return True

"""The school calendar (B11): weekdays are school days except Japan's national holidays, unless
the school's calendar, which staff edit on the console (audited), says otherwise."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.gates import calendar
from mimamori.gates.models import SchoolDay
from tests.cast import make_school, make_staff

pytestmark = pytest.mark.django_db

D = datetime.date


@pytest.mark.parametrize(
    ("day", "school_day"),
    [
        (D(2026, 12, 7), True),  # Monday
        (D(2026, 12, 11), True),  # Friday
        (D(2026, 12, 12), False),  # Saturday
        (D(2026, 12, 13), False),  # Sunday
        (D(2026, 11, 23), False),  # 勤労感謝の日 (Monday)
        (D(2026, 5, 6), False),  # 振替休日 (Wednesday, for 憲法記念日 on a Sunday)
        (D(2026, 9, 22), False),  # 国民の休日 (Tuesday between 敬老の日 and 秋分の日)
        (D(2026, 9, 21), False),  # 敬老の日 (third Monday of September)
        (D(2027, 1, 11), False),  # 成人の日 2027 (second Monday of January)
    ],
)
def test_the_default_calendar(day: datetime.date, school_day: bool) -> None:
    assert calendar.default_school_day(day) is school_day
    assert calendar.is_school_day(make_school(), day) is school_day


def test_holidays_have_their_japanese_names() -> None:
    assert calendar.national_holiday(D(2026, 11, 23)) == "勤労感謝の日"
    assert calendar.national_holiday(D(2026, 12, 7)) == ""


def test_a_schools_entries_override_the_default_for_that_school_only() -> None:
    school, neighbour = make_school(), make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    assert (
        calendar.set_days(school, D(2026, 12, 7), D(2026, 12, 7), open_=False, note="開校記念日", by=staff)
        == 1
    )
    assert (
        calendar.set_days(school, D(2026, 12, 12), D(2026, 12, 12), open_=True, note="土曜授業", by=staff)
        == 1
    )
    assert not calendar.is_school_day(school, D(2026, 12, 7))
    assert calendar.is_school_day(school, D(2026, 12, 12))
    assert calendar.is_school_day(neighbour, D(2026, 12, 7))
    assert not calendar.is_school_day(neighbour, D(2026, 12, 12))
    assert calendar.school_days([school, neighbour], D(2026, 12, 7)) == {neighbour.pk}
    assert calendar.school_days([school, neighbour], D(2026, 12, 12)) == {school.pk}
    assert calendar.remove_day(school, D(2026, 12, 7), by=staff)
    assert calendar.is_school_day(school, D(2026, 12, 7))


def test_a_vacation_closes_only_the_days_that_would_have_been_school_days() -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    # 冬休み: Thursday 24 December to Thursday 7 January.
    changed = calendar.set_days(school, D(2026, 12, 24), D(2027, 1, 7), open_=False, note="冬休み", by=staff)
    closed = set(SchoolDay.objects.filter(school=school).values_list("day", flat=True))
    assert changed == len(closed)
    assert D(2026, 12, 26) not in closed  # a Saturday: closed anyway, no entry
    assert D(2027, 1, 1) not in closed  # 元日
    assert D(2026, 12, 24) in closed
    assert all(
        not calendar.is_school_day(school, D(2026, 12, 24) + datetime.timedelta(days=n)) for n in range(15)
    )
    # Marking the same again changes nothing and records nothing.
    assert (
        calendar.set_days(school, D(2026, 12, 24), D(2027, 1, 7), open_=False, note="冬休み", by=staff) == 0
    )
    assert AuditEvent.objects.filter(action="gates.calendar_changed").count() == 1
    with pytest.raises(ValueError, match="span"):
        calendar.set_days(school, D(2027, 1, 1), D(2027, 6, 1), open_=False, note="", by=staff)


def test_staff_edit_the_calendar_on_the_console_audited_and_within_their_scope() -> None:
    school = make_school()
    client = Client()
    client.force_login(make_staff(Role.SCHOOL, school=school))
    url = reverse("console:school_calendar", args=[school.pk])
    assert url in client.get(reverse("console:school", args=[school.pk])).content.decode()
    page = client.get(url).content.decode()
    assert "学校カレンダー" in page
    response = client.post(url, {"first": "2027-02-01", "last": "", "open": "0", "note": "開校記念日"})
    assert response.status_code == 302
    assert not calendar.is_school_day(school, D(2027, 2, 1))
    event = AuditEvent.objects.get(action="gates.calendar_changed")
    assert event.details == {"days": ["2027-02-01"], "open": False, "note": "開校記念日"}
    assert event.target == f"school {school.pk}"
    assert client.post(url, {"first": "2027-02-06", "open": "1", "note": "土曜授業"}).status_code == 302
    page = client.get(url).content.decode()
    assert "開校記念日" in page
    assert "土曜授業" in page
    assert client.post(url, {"first": "2027-02-10", "last": "2027-02-01", "open": "0"}).status_code == 400
    remove = reverse("console:school_calendar_remove", args=[school.pk])
    assert client.post(remove, {"day": "2027-02-01"}).status_code == 302
    assert calendar.is_school_day(school, D(2027, 2, 1))
    assert AuditEvent.objects.filter(action="gates.calendar_entry_removed").count() == 1
    # Another school's staff: 404, nothing changed.
    outsider = Client()
    outsider.force_login(make_staff(Role.SCHOOL, school=make_school(school.municipality)))
    assert outsider.post(url, {"first": "2027-02-02", "open": "0"}).status_code == 404
    assert outsider.post(remove, {"day": "2027-02-06"}).status_code == 404
    assert calendar.is_school_day(school, D(2027, 2, 2))
    assert calendar.is_school_day(school, D(2027, 2, 6))

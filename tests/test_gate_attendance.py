"""The attendance check (B11): at the school's time on a school day, exactly the children with
neither a 登校 pass nor a 欠席連絡 are listed, once; their guardians are told once where the
municipality enabled it, at the gate slots, and never on a closed day.

Through the sweep's own step, the outbox's tasks and a real SMTP sink; passes are written
directly (their recording path is gates/passes.py)."""

from __future__ import annotations

import datetime
import threading
import time as clock

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.gates import absences, attendance, calendar
from mimamori.gates.models import (
    AbsenceKind,
    AttendanceCheck,
    Direction,
    GatePreference,
    MissingChild,
    MunicipalityGateSettings,
    PassOutcome,
    SchoolDay,
    SchoolGateSettings,
)
from mimamori.mail.models import OutgoingMail
from mimamori.registry.models import School
from mimamori.registry.registrants import deregister
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.gates_cast import HOLIDAY, MONDAY, SATURDAY, at, make_pass, make_reader
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db


def school_checking_at(time: datetime.time = datetime.time(8, 30), *, tell: bool = False) -> School:
    school = make_school(make_municipality())
    SchoolGateSettings.objects.create(school=school, check_time=time)
    MunicipalityGateSettings.objects.create(municipality=school.municipality, tell_guardians=tell)
    return school


def listed(school: School, day: datetime.date = MONDAY) -> set[int]:
    check = AttendanceCheck.objects.get(school=school, day=day)
    return set(MissingChild.objects.filter(attendance_check=check).values_list("registrant_id", flat=True))


def test_the_list_at_the_check_time_holds_exactly_the_children_with_neither_a_pass_nor_a_report() -> None:
    school = school_checking_at()
    reader = make_reader(school)
    child = {name: make_registrant(school, [f"{name}@docomo.ne.jp"]) for name in NAMES}
    make_pass(reader, child["passed"], at(MONDAY, 7, 50))
    make_pass(reader, child["repeat"], at(MONDAY, 7, 51), outcome=PassOutcome.REPEAT)
    make_pass(reader, child["old"], at(MONDAY, 7, 52), outcome=PassOutcome.OLD)
    make_pass(reader, child["no_address"], at(MONDAY, 7, 53), outcome=PassOutcome.NO_ADDRESS)
    make_pass(reader, None, at(MONDAY, 7, 54), outcome=PassOutcome.UNKNOWN)  # a tag nobody carries
    make_pass(reader, child["yesterday"], at(MONDAY - datetime.timedelta(days=1), 7, 55))
    make_pass(reader, child["only_out"], at(MONDAY, 8, 0), direction=Direction.OUT)
    before = MONDAY - datetime.timedelta(days=2)
    absences.file(child["absent"], MONDAY, AbsenceKind.ABSENT, "発熱のため", None, today=before)
    absences.file(child["late"], MONDAY, AbsenceKind.LATE, "通院のため10時頃", None, today=before)
    absences.file(child["withdrawn"], MONDAY, AbsenceKind.ABSENT, "発熱のため", None, today=before)
    absences.withdraw(child["withdrawn"], MONDAY, None, today=before)
    absences.file(
        child["tomorrow"], MONDAY + datetime.timedelta(days=1), AbsenceKind.ABSENT, "私用", None, today=before
    )
    gone = make_registrant(school)
    deregister(gone)
    elsewhere = make_registrant(school_checking_at())  # another school with the same time

    assert attendance.check_due(at(MONDAY, 8, 29))["attendance_checks"] == 0
    assert not AttendanceCheck.objects.exists()
    assert attendance.check_due(at(MONDAY, 8, 31))["attendance_checks"] == 2

    expected = {child[name].pk for name in ("neither", "withdrawn", "yesterday", "only_out", "tomorrow")}
    assert listed(school) == expected
    assert AttendanceCheck.objects.get(school=school, day=MONDAY).missing == len(expected)
    assert listed(elsewhere.school) == {elsewhere.pk}
    assert not OutgoingMail.objects.exists()  # the municipality tells no guardians


NAMES = (
    "passed", "repeat", "old", "no_address", "yesterday", "only_out",
    "absent", "late", "withdrawn", "tomorrow", "neither",
)  # fmt: skip


def test_the_list_is_made_once_however_often_the_sweep_runs() -> None:
    school = school_checking_at(tell=True)
    make_registrant(school, ["mama@docomo.ne.jp"])
    assert attendance.check_due(at(MONDAY, 8, 30))["attendance_checks"] == 1
    assert attendance.check_due(at(MONDAY, 8, 31))["attendance_checks"] == 0
    assert attendance.check_due(at(MONDAY, 12, 0)) == {"attendance_checks": 0, "attendance_told": 0}
    # Two workers that both found the school due: the unique list lets one through.
    assert attendance.make(school, MONDAY) is None
    assert AttendanceCheck.objects.filter(school=school).count() == 1
    assert OutgoingMail.objects.filter(kind="gate_missing").count() == 1
    # The next school day has a list of its own.
    assert attendance.check_due(at(MONDAY + datetime.timedelta(days=1), 8, 30))["attendance_checks"] == 1


@pytest.mark.parametrize("day", [SATURDAY, SATURDAY + datetime.timedelta(days=1), HOLIDAY])
def test_nothing_on_a_weekend_or_a_national_holiday(day: datetime.date) -> None:
    school = school_checking_at(tell=True)
    make_registrant(school, ["mama@docomo.ne.jp"])
    assert attendance.check_due(at(day, 9, 0))["attendance_checks"] == 0
    assert not AttendanceCheck.objects.exists()
    assert not OutgoingMail.objects.exists()


def test_nothing_on_a_day_the_school_closed_and_a_list_on_an_open_saturday() -> None:
    school = school_checking_at(tell=True)
    make_registrant(school, ["mama@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    calendar.set_days(school, MONDAY, MONDAY, open_=False, note="開校記念日", by=staff)
    calendar.set_days(school, SATURDAY, SATURDAY, open_=True, note="学校公開", by=staff)
    assert attendance.check_due(at(MONDAY, 9, 0))["attendance_checks"] == 0
    assert not OutgoingMail.objects.exists()
    assert attendance.check_due(at(SATURDAY, 9, 0))["attendance_checks"] == 1
    assert OutgoingMail.objects.filter(kind="gate_missing").count() == 1
    assert SchoolDay.objects.filter(school=school).count() == 2


def test_a_school_without_a_check_time_has_no_list() -> None:
    school = school_checking_at(tell=True)
    SchoolGateSettings.objects.filter(school=school).update(check_time=None)
    make_registrant(school, ["mama@docomo.ne.jp"])
    assert attendance.check_due(at(MONDAY, 23, 0))["attendance_checks"] == 0


def test_guardians_are_told_once_at_their_gate_slots_where_the_municipality_enabled_it(
    smtp_sink: Sink,
) -> None:
    school = school_checking_at(tell=True)
    reader = make_reader(school)
    missing = make_registrant(school, ["mama@docomo.ne.jp", "papa@au.com", "grandma@softbank.ne.jp"])
    chosen = make_registrant(school, ["one@docomo.ne.jp", "two@au.com"])
    GatePreference.objects.create(registrant=chosen, slots=[2])
    arrived = make_registrant(school, ["arrived@docomo.ne.jp"])
    make_pass(reader, arrived, at(MONDAY, 8, 0))
    quiet = school_checking_at(tell=False)  # its municipality keeps the list for staff only
    make_registrant(quiet, ["quiet@docomo.ne.jp"])

    result = attendance.check_due(at(MONDAY, 8, 30))
    assert result == {"attendance_checks": 2, "attendance_told": 4}
    run_until_quiet()
    attendance.check_due(at(MONDAY, 8, 45))
    run_until_quiet()

    assert smtp_sink.copies() == {
        "mama@docomo.ne.jp": 1,
        "papa@au.com": 1,
        "grandma@softbank.ne.jp": 1,
        "two@au.com": 1,
    }
    mail = smtp_sink.to("mama@docomo.ne.jp")[0]
    assert "まだ登校が確認できていません" in str(mail["Subject"])
    assert missing.child_name in str(mail["Subject"])
    body = mail.get_body().get_content()  # type: ignore[union-attr]
    assert "欠席・遅刻連絡" in body
    assert "/portal/absences/" in body
    assert school.sender_address in str(mail["From"])
    check = AttendanceCheck.objects.get(school=school)
    assert (check.missing, check.guardians_told) == (2, 4)
    assert AttendanceCheck.objects.get(school=quiet).guardians_told == 0


def test_a_list_made_hours_late_is_for_staff_only(smtp_sink: Sink) -> None:
    """Workers down at 8:30 and back at 15:00: staff get the list, guardians no mail."""
    school = school_checking_at(tell=True)
    child = make_registrant(school, ["mama@docomo.ne.jp"])
    assert attendance.check_due(at(MONDAY, 15, 0)) == {"attendance_checks": 1, "attendance_told": 0}
    run_until_quiet()
    assert listed(school) == {child.pk}
    assert not smtp_sink.copies()


def test_within_two_hours_of_the_check_time_guardians_are_still_told() -> None:
    school = school_checking_at(tell=True)
    make_registrant(school, ["mama@docomo.ne.jp"])
    assert attendance.check_due(at(MONDAY, 10, 29))["attendance_told"] == 1


def signed_in(role: str, **scope: object) -> Client:
    client = Client()
    client.force_login(make_staff(role, **scope))  # type: ignore[arg-type]
    return client


def test_todays_page_shows_who_has_since_arrived_or_been_reported() -> None:
    school = school_checking_at()
    reader = make_reader(school)
    later, reported, still = (make_registrant(school, grade=2, class_name="1") for _ in range(3))
    today = timezone.localdate()
    attendance.make(school, today)
    make_pass(reader, later, at(today, 0, 1))
    absences.file(reported, today, AbsenceKind.LATE, "寝坊しました", None)

    client = signed_in(Role.SCHOOL, school=school)
    page = client.get(reverse("console:school_attendance", args=[school.pk])).content.decode()
    check = AttendanceCheck.objects.get(school=school)
    rows = [(r.registrant.pk, r.since_arrived, r.since_reported) for r in attendance.listed(check)]
    assert sorted(rows) == sorted(
        [(later.pk, True, False), (reported.pk, False, True), (still.pk, False, False)]
    )
    assert [
        r.registrant_id for r in attendance.still_missing(AttendanceCheck.objects.get(school=school))
    ] == [still.pk]
    assert "登校済み" in page
    assert "連絡あり" in page
    assert "未確認" in page
    assert "寝坊しました" in page  # today's 欠席連絡, by class
    assert f'data-missing="{still.pk}" class="error"' in page


def test_staff_of_another_school_reach_none_of_the_attendance_pages() -> None:
    school = school_checking_at()
    outsider = signed_in(Role.SCHOOL, school=make_school(school.municipality))
    for name in ("school_attendance", "school_calendar", "school_gate_settings"):
        assert outsider.get(reverse(f"console:{name}", args=[school.pk])).status_code == 404
    assert (
        outsider.post(
            reverse("console:school_gate_settings", args=[school.pk]), {"check_time": "09:00"}
        ).status_code
        == 404
    )
    assert SchoolGateSettings.objects.get(school=school).check_time == datetime.time(8, 30)


def test_school_staff_set_the_check_time_and_only_the_municipality_tells_guardians() -> None:
    school = school_checking_at()
    url = reverse("console:school_gate_settings", args=[school.pk])
    teacher = signed_in(Role.SCHOOL, school=school)
    assert teacher.post(url, {"check_time": "08:45"}).status_code == 302
    assert attendance.check_time_of(school) == datetime.time(8, 45)
    event = AuditEvent.objects.get(action="gates.check_time_changed")
    assert event.details == {"old": "08:30", "new": "08:45"}
    # School staff see the municipality's choice but cannot change it.
    assert teacher.post(url, {"tell": "1", "tell_guardians": "on"}).status_code == 400
    assert not attendance.tells_guardians(school)
    city = signed_in(Role.MUNICIPALITY, municipality=school.municipality)
    assert city.post(url, {"tell": "1", "tell_guardians": "on"}).status_code == 302
    assert attendance.tells_guardians(school)
    assert AuditEvent.objects.get(action="gates.tell_guardians_changed").details == {
        "old": False,
        "new": True,
    }
    # Empty: no check at all.
    assert teacher.post(url, {"check_time": ""}).status_code == 302
    assert attendance.check_time_of(school) is None


class Rollback(Exception):
    pass


def hold_a_list_while_they_start(school: School, workers: list[threading.Thread]) -> None:
    """An uncommitted list of that school and day: the workers find the school due, and both
    wait on the unique index until this transaction ends (rolled back, by Rollback)."""
    with transaction.atomic():
        AttendanceCheck.objects.create(school=school, day=MONDAY)
        for worker in workers:
            worker.start()
        deadline = clock.monotonic() + 10
        waiting = 0
        while clock.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                (waiting,) = cursor.fetchone()
            if waiting == 2:
                break
            clock.sleep(0.02)
        assert waiting == 2
        raise Rollback


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_make_one_list_and_tell_guardians_once() -> None:
    """Two sweeps find the school due at the same moment: the unique list lets one through, and
    the other makes nothing and posts nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises whole write transactions; the race is PostgreSQL's")
    school = school_checking_at(tell=True)
    make_registrant(school, ["mama@docomo.ne.jp", "papa@au.com"])
    done: list[int] = []

    def sweep_in_a_worker() -> None:
        try:
            done.append(attendance.check_due(at(MONDAY, 8, 31))["attendance_checks"])
        finally:
            connections.close_all()

    workers = [threading.Thread(target=sweep_in_a_worker) for _ in range(2)]
    with pytest.raises(Rollback):
        hold_a_list_while_they_start(school, workers)
    for worker in workers:
        worker.join(10)
    assert sorted(done) == [0, 1]
    assert AttendanceCheck.objects.filter(school=school).count() == 1
    assert MissingChild.objects.count() == 1
    assert OutgoingMail.objects.filter(kind="gate_missing").count() == 2

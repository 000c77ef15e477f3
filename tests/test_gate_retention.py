"""Gate retention (B6, B11): passes are erased MIMAMORI_GATE_RETENTION_DAYS after they were
recorded, in batches, the day counts stay; 欠席連絡 and list rows go after as many days past their
date, the lists' counts stay; and a child's gate data goes when the registry erases the child."""

from __future__ import annotations

import datetime

import pytest
from django.db import models
from django.utils import timezone

from mimamori.gates import absences, attendance, retention
from mimamori.gates.models import (
    Absence,
    AbsenceKind,
    AttendanceCheck,
    Direction,
    GateDayCount,
    GatePass,
    GatePreference,
    MissingChild,
)
from mimamori.registry.models import Registrant
from mimamori.registry.registrants import deregister
from mimamori.registry.retention import erase_expired
from mimamori.tasking.sweep import sweep
from tests.cast import make_registrant, make_school
from tests.gates_cast import MONDAY, at, make_pass, make_reader

pytestmark = pytest.mark.django_db

NOW = at(MONDAY, 12, 0)


def test_passes_go_by_when_they_were_recorded_and_the_counts_stay(settings: object) -> None:
    school = make_school()
    reader = make_reader(school)
    child = make_registrant(school)
    old = make_pass(reader, child, NOW - datetime.timedelta(days=29))
    kept = make_pass(reader, child, NOW - datetime.timedelta(days=27))
    # A reader whose clock said 1970: recorded yesterday, so kept the full period.
    wrong_clock = make_pass(
        reader, child, at(datetime.date(1970, 1, 1), 8), recorded_at=NOW - datetime.timedelta(days=1)
    )
    count = GateDayCount.objects.create(
        school=school, day=MONDAY - datetime.timedelta(days=29), direction=Direction.IN, passes=1
    )
    assert retention.erase_old(NOW)["gate_passes_erased"] == 1
    assert set(GatePass.objects.values_list("pk", flat=True)) == {kept.pk, wrong_clock.pk}
    assert not GatePass.objects.filter(pk=old.pk).exists()
    assert GateDayCount.objects.filter(pk=count.pk).exists()
    assert retention.erase_old(NOW) == {
        "gate_passes_erased": 0,
        "absences_erased": 0,
        "missing_rows_erased": 0,
    }


def test_passes_go_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = make_reader(make_school())
    for _ in range(5):
        make_pass(reader, None, NOW - datetime.timedelta(days=40))
    monkeypatch.setattr(retention, "BATCH", 2)
    assert [retention.erase_old(NOW)["gate_passes_erased"] for _ in range(4)] == [2, 2, 1, 0]


def test_reports_and_list_rows_go_after_the_same_days_and_the_lists_counts_stay() -> None:
    school = make_school()
    child = make_registrant(school)
    long_ago = MONDAY - datetime.timedelta(days=29)
    absences.file(child, long_ago, AbsenceKind.ABSENT, "発熱", None, today=long_ago)
    recent = MONDAY - datetime.timedelta(days=27)
    absences.file(child, recent, AbsenceKind.ABSENT, "発熱", None, today=recent)
    other = make_registrant(school)
    attendance.make(school, long_ago)
    attendance.make(school, recent)
    done = retention.erase_old(NOW)
    assert done == {"gate_passes_erased": 0, "absences_erased": 1, "missing_rows_erased": 1}
    assert list(Absence.objects.values_list("day", flat=True)) == [recent]
    old_check = AttendanceCheck.objects.get(day=long_ago)
    assert old_check.missing == 1  # the count stays, the row naming the child goes
    assert not MissingChild.objects.filter(attendance_check=old_check).exists()
    assert MissingChild.objects.filter(attendance_check__day=recent, registrant=other).exists()


def test_the_sweep_runs_the_steps_of_the_gates_app() -> None:
    reader = make_reader(make_school())
    make_pass(reader, None, timezone.now() - datetime.timedelta(days=60))
    report = sweep()
    assert report["gate_passes_erased"] == 1
    assert "attendance_checks" in report


def test_a_childs_gate_data_goes_when_the_registry_erases_the_child(settings: object) -> None:
    school = make_school()
    reader = make_reader(school)
    child = make_registrant(school)
    sibling = make_registrant(school)
    for registrant in (child, sibling):
        make_pass(reader, registrant, timezone.now())
        absences.file(registrant, timezone.localdate(), AbsenceKind.ABSENT, "発熱", None)
        GatePreference.objects.create(registrant=registrant, slots=[1])
    attendance.make(school, timezone.localdate() - datetime.timedelta(days=1))
    Registrant.objects.filter(pk__in=[child.pk, sibling.pk]).update(tag_id=models.F("pk"))
    deregister(child)
    settings.MIMAMORI_RETENTION_DAYS = 0  # type: ignore[attr-defined]
    Registrant.objects.filter(pk=child.pk).update(deregistered_at=timezone.now() - datetime.timedelta(days=1))
    assert erase_expired() == 1
    for model in (GatePass, Absence, GatePreference, MissingChild):
        assert not model.objects.filter(registrant=child).exists(), model
        assert model.objects.filter(registrant=sibling).exists(), model
    assert Registrant.objects.get(pk=child.pk).tag_id == ""
    assert Registrant.objects.get(pk=sibling.pk).tag_id == str(sibling.pk)

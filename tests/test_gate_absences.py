"""欠席連絡 (B11): a guardian files absent or late for today or a later date on the portal, one live
report per child and day (filing again replaces it), withdraws it; staff see today's by class."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.gates import absences
from mimamori.gates.models import Absence, AbsenceKind
from mimamori.registry.models import Registrant
from tests.cast import make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 12, 7)


def guardian(registrant: Registrant) -> Client:
    client = Client()
    client.force_login(registrant.account)
    return client


def test_a_report_is_for_today_or_later_and_filing_again_replaces_it() -> None:
    child = make_registrant()
    first = absences.file(child, TODAY, AbsenceKind.LATE, "通院のため", child.account, today=TODAY)
    second = absences.file(child, TODAY, AbsenceKind.ABSENT, "発熱のため", child.account, today=TODAY)
    assert list(absences.upcoming(child, TODAY)) == [second]
    first.refresh_from_db()
    assert first.withdrawn_at is not None  # kept, withdrawn: the school can see what changed
    assert Absence.objects.filter(registrant=child).count() == 2
    with pytest.raises(ValidationError) as past:
        absences.file(child, TODAY - datetime.timedelta(days=1), AbsenceKind.ABSENT, "x", None, today=TODAY)
    assert past.value.code == "past"
    with pytest.raises(ValidationError) as far:
        absences.file(child, TODAY + datetime.timedelta(days=61), AbsenceKind.ABSENT, "x", None, today=TODAY)
    assert far.value.code == "far"
    later = absences.file(
        child, TODAY + datetime.timedelta(days=3), AbsenceKind.ABSENT, "家庭の事情", None, today=TODAY
    )
    assert list(absences.upcoming(child, TODAY)) == [second, later]


def test_filing_and_withdrawing_are_audited_without_the_reason() -> None:
    child = make_registrant()
    absences.file(child, TODAY, AbsenceKind.ABSENT, "発熱のため", child.account, today=TODAY)
    absences.file(child, TODAY, AbsenceKind.LATE, "通院のため", child.account, today=TODAY)
    assert absences.withdraw(child, TODAY, child.account, today=TODAY)
    assert not absences.withdraw(child, TODAY, child.account, today=TODAY)  # nothing left
    events = list(AuditEvent.objects.filter(action__startswith="gates.absence").order_by("pk"))
    assert [(e.action, e.details) for e in events] == [
        ("gates.absence_filed", {"day": "2026-12-07", "kind": "absent", "replaced": False}),
        ("gates.absence_filed", {"day": "2026-12-07", "kind": "late", "replaced": True}),
        ("gates.absence_withdrawn", {"day": "2026-12-07"}),
    ]
    assert all(e.actor == child.account for e in events)
    assert not absences.upcoming(child, TODAY).exists()


def test_a_past_report_cannot_be_withdrawn() -> None:
    child = make_registrant()
    absences.file(child, TODAY, AbsenceKind.ABSENT, "発熱のため", None, today=TODAY)
    assert not absences.withdraw(child, TODAY, None, today=TODAY + datetime.timedelta(days=1))
    assert Absence.objects.get(registrant=child).withdrawn_at is None


def test_the_portal_files_lists_and_withdraws_without_javascript() -> None:
    child = make_registrant()
    client = guardian(child)
    home = client.get(reverse("portal:home")).content.decode()
    url = reverse("portal:absences")
    assert url in home
    form = client.get(url)
    assert form.status_code == 200
    assert f'value="{timezone.localdate().isoformat()}"' in form.content.decode()  # today by default
    today = timezone.localdate()
    response = client.post(url, {"day": today.isoformat(), "kind": "absent", "reason": "発熱のため"})
    assert response.status_code == 302
    page = client.get(url).content.decode()
    assert "欠席を学校に連絡しました" in page
    assert "発熱のため" in page
    assert absences.upcoming(child).get().kind == AbsenceKind.ABSENT
    # The past is refused with a reason; an empty reason too.
    yesterday = (today - datetime.timedelta(days=1)).isoformat()
    refused = client.post(url, {"day": yesterday, "kind": "absent", "reason": "発熱"})
    assert refused.status_code == 200  # the form again, with the reason
    assert "連絡できるのは今日以降の日付です" in refused.content.decode()
    assert client.post(url, {"day": today.isoformat(), "kind": "late", "reason": ""}).status_code == 200
    assert absences.upcoming(child).get().kind == AbsenceKind.ABSENT  # neither replaced the report
    # Withdrawn by date.
    response = client.post(reverse("portal:absence_withdraw"), {"day": today.isoformat()})
    assert response.status_code == 302
    assert not absences.upcoming(child).exists()


def test_a_guardian_reaches_only_their_own_child() -> None:
    school = make_school()
    mine, theirs = make_registrant(school), make_registrant(school)
    absences.file(theirs, timezone.localdate(), AbsenceKind.ABSENT, "ほかの家の理由", None)
    client = guardian(mine)
    assert "ほかの家の理由" not in client.get(reverse("portal:absences")).content.decode()
    client.post(reverse("portal:absence_withdraw"), {"day": timezone.localdate().isoformat()})
    assert absences.upcoming(theirs).exists()  # nothing of the other child can be withdrawn
    # Staff are not guardians: the page sends them to the portal's login.
    staff = Client()
    staff.force_login(make_staff(Role.SCHOOL, school=school))
    assert staff.get(reverse("portal:absences")).status_code == 302


def test_staff_see_todays_reports_by_grade_and_class() -> None:
    school = make_school()
    today = timezone.localdate()
    rows = [(3, "2", "風邪"), (1, "1", "通院"), (3, "1", "法事")]
    for grade, class_name, reason in rows:
        child = make_registrant(school, grade=grade, class_name=class_name)
        absences.file(child, today, AbsenceKind.ABSENT, reason, None)
    tomorrow = make_registrant(school)
    absences.file(tomorrow, today + datetime.timedelta(days=1), AbsenceKind.ABSENT, "明日の理由", None)
    assert [a.reason for a in absences.of_day(school, today)] == ["通院", "法事", "風邪"]
    client = Client()
    client.force_login(make_staff(Role.SCHOOL, school=school))
    page = client.get(reverse("console:school_attendance", args=[school.pk])).content.decode()
    assert page.index("1年1組") < page.index("3年1組") < page.index("3年2組")
    assert "明日の理由" not in page
    assert (
        reverse("console:school_attendance", args=[school.pk])
        in client.get(reverse("console:school", args=[school.pk])).content.decode()
    )

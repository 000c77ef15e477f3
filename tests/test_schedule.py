"""Scheduled sends (P7): a broadcast leaves at its time and not before, from the database's
row alone (the sweep); cancel before then; the API and the console's controls; scope and audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import School
from mimamori.tasking import sweep
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def school() -> School:
    school = make_school(name="緑小学校", local="midori-sho")
    make_registrant(school, ["family@docomo.ne.jp"])
    make_registrant(school, ["papa@ezweb.ne.jp"])
    return school


@pytest.fixture
def staff(school: School) -> User:
    return make_staff(Role.SCHOOL, school=school)


def draft(staff: User, school: School) -> Broadcast:
    scope = resolve_scope(staff, school_ids=[school.pk])
    return sending.compose(staff, subject="下校時刻変更", body="14時に下校します。", scope=scope)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_scheduled_broadcast_leaves_when_due_and_not_before(
    smtp_sink: Sink, staff: User, school: School
) -> None:
    broadcast = draft(staff, school)
    at = timezone.now() + timedelta(hours=2)
    assert sending.schedule(broadcast, at, by=staff)
    assert broadcast.status == BroadcastStatus.SCHEDULED
    assert broadcast.send_at == at

    assert sending.send_due(at - timedelta(seconds=1)) == 0
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SCHEDULED
    assert not Delivery.objects.filter(broadcast=broadcast).exists()
    assert not smtp_sink.messages

    assert sending.send_due(at) == 1
    assert sending.send_due(at) == 0  # a second sweep finds nothing to start
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert sorted(smtp_sink.copies()) == ["family@docomo.ne.jp", "papa@ezweb.ne.jp"]
    sent = AuditEvent.objects.get(action="broadcast.sent", target=f"broadcast {broadcast.pk}")
    assert sent.actor is None
    assert sent.details["scheduled_at"] == timezone.localtime(at).isoformat()


def test_the_sweep_sends_what_the_row_says_is_due(smtp_sink: Sink, staff: User, school: School) -> None:
    # Nothing but the row: a time that passed while no worker ran (a restart) is sent at the next sweep.
    broadcast = draft(staff, school)
    sending.schedule(broadcast, timezone.now() + timedelta(minutes=5), by=staff)
    Broadcast.objects.filter(pk=broadcast.pk).update(send_at=timezone.now() - timedelta(minutes=1))
    report = sweep.sweep()
    assert report["scheduled_sent"] == 1
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert len(smtp_sink.messages) == 2


def test_cancel_before_the_time_and_nothing_leaves(smtp_sink: Sink, staff: User, school: School) -> None:
    broadcast = draft(staff, school)
    at = timezone.now() + timedelta(hours=1)
    sending.schedule(broadcast, at, by=staff)
    assert sending.cancel(broadcast, by=staff)
    assert broadcast.status == BroadcastStatus.CANCELLED
    assert sending.send_due(at + timedelta(hours=1)) == 0
    run_until_quiet()
    assert not smtp_sink.messages
    assert not sending.cancel(broadcast, by=staff)
    assert not sending.send(broadcast, by=staff)  # cancelled is final
    actions = list(
        AuditEvent.objects.filter(target=f"broadcast {broadcast.pk}")
        .order_by("pk")
        .values_list("action", "actor")
    )
    assert actions == [("broadcast.scheduled", staff.pk), ("broadcast.cancelled", staff.pk)]


def test_a_broadcast_already_sending_cannot_be_cancelled(staff: User, school: School) -> None:
    broadcast = draft(staff, school)
    sending.schedule(broadcast, timezone.now() + timedelta(hours=1), by=staff)
    assert sending.send(broadcast, by=staff)  # sent now after all
    assert not sending.cancel(broadcast, by=staff)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENDING
    plain = draft(staff, school)
    assert not sending.cancel(plain, by=staff)  # a draft is not scheduled
    assert Broadcast.objects.get(pk=plain.pk).status == BroadcastStatus.DRAFT


def test_a_time_in_the_past_or_too_far_ahead_is_refused(staff: User, school: School) -> None:
    broadcast = draft(staff, school)
    for at in (timezone.now() - timedelta(minutes=1), timezone.now() + timedelta(days=400)):
        with pytest.raises(ValidationError):
            sending.schedule(broadcast, at, by=staff)
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.DRAFT


def test_api_send_at_cancel_and_their_refusals(staff: User, school: School) -> None:
    api = Api(staff)
    broadcast = draft(staff, school)
    at = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
    response = api.post(f"/broadcasts/{broadcast.pk}/send", {"at": at.isoformat()})
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "scheduled"
    got = api.get(f"/broadcasts/{broadcast.pk}").json()
    assert got["status"] == "scheduled"
    assert got["send_at"] == timezone.localtime(at).isoformat()

    other = make_staff(Role.SCHOOL, school=make_school(school.municipality))
    assert Api(other).post(f"/broadcasts/{broadcast.pk}/cancel").status_code == 404

    response = api.post(f"/broadcasts/{broadcast.pk}/cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert api.post(f"/broadcasts/{broadcast.pk}/cancel").status_code == 409
    assert api.post(f"/broadcasts/{broadcast.pk}/send").status_code == 409

    second = draft(staff, school)
    past = (timezone.now() - timedelta(hours=1)).isoformat()
    response = api.post(f"/broadcasts/{second.pk}/send", {"at": past})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "at"]
    # No body at all, as before scheduled sends: sent now.
    response = api.client.post(
        f"/api/v1/broadcasts/{second.pk}/send", data=b"", content_type="application/json", headers=api.headers
    )
    assert response.status_code == 202
    assert response.json()["status"] == "sending"


def test_console_send_at_a_time_then_cancel(staff: User, school: School) -> None:
    client = signed_in(staff)
    broadcast = draft(staff, school)
    page = client.get(reverse("console:broadcast", args=[broadcast.pk]))
    assert 'type="datetime-local"' in page.content.decode()
    at = timezone.localtime(timezone.now() + timedelta(days=1)).replace(second=0, microsecond=0)
    response = client.post(
        reverse("console:broadcast_schedule", args=[broadcast.pk]), {"at": at.strftime("%Y-%m-%dT%H:%M")}
    )
    assert response.status_code == 302
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SCHEDULED
    assert broadcast.send_at == at

    shown = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert reverse("console:broadcast_cancel", args=[broadcast.pk]) in shown
    assert at.strftime("%Y-%m-%d %H:%M") in shown
    listing = client.get(reverse("console:broadcasts")).content.decode()
    assert at.strftime("%Y-%m-%d %H:%M") in listing

    # Another school's staff cannot cancel it.
    other = make_staff(Role.SCHOOL, school=make_school(school.municipality))
    assert signed_in(other).post(reverse("console:broadcast_cancel", args=[broadcast.pk])).status_code == 404

    client.post(reverse("console:broadcast_cancel", args=[broadcast.pk]))
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.CANCELLED
    assert AuditEvent.objects.filter(action="broadcast.cancelled", actor=staff).count() == 1


def test_console_refuses_a_time_that_has_passed(staff: User, school: School) -> None:
    client = signed_in(staff)
    broadcast = draft(staff, school)
    past = timezone.localtime(timezone.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        reverse("console:broadcast_schedule", args=[broadcast.pk]), {"at": past}, follow=True
    )
    assert response.status_code == 200
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.DRAFT
    assert len(list(response.context["messages"])) == 1

"""Reminders to the unconfirmed (P3) and the municipality's confirmation setting (S12)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.confirming import find_delivery, record_confirmation
from mimamori.receipts.models import Reminder
from mimamori.receipts.reminders import ReminderRefused, send_reminder
from mimamori.registry.models import Address, School
from mimamori.registry.registrants import deregister
from mimamori.tasking.sweep import sweep
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://\S+/c/([0-9a-f]+)/")
BACKEND = "django.contrib.auth.backends.ModelBackend"


def sent_broadcast(staff: User, reminder_minutes: tuple[int, ...] = ()) -> Broadcast:
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="注意してください。",
        scope=resolve_scope(staff),
        request_confirmation=True,
        reminder_minutes=reminder_minutes,
    )
    sending.send(broadcast)
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    return broadcast


def text(mail: Any) -> str:
    body = mail.get_body()
    assert body is not None
    return str(body.get_content())


def link(mail: Any) -> str:
    match = LINK.search(text(mail))
    assert match, "the mail carries a confirmation link"
    return match.group(1)


def confirm_through(sink: Sink, address: str) -> None:
    delivery = find_delivery(link(sink.to(address)[0]))
    assert delivery is not None
    record_confirmation(delivery)


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


def test_a_reminder_reaches_only_slots_1_and_2_of_the_unconfirmed(smtp_sink: Sink) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["done1@docomo.ne.jp", "done2@ezweb.ne.jp"])
    make_registrant(school, ["wait1@docomo.ne.jp", "wait2@ezweb.ne.jp", "wait3@au.com", "wait4@au.com"])
    option_off = make_registrant(school, ["off@docomo.ne.jp"])
    gone = make_registrant(school, ["gone@docomo.ne.jp"])
    moved = make_registrant(school, ["moved@docomo.ne.jp"])
    broadcast = sent_broadcast(staff)
    assert smtp_sink.copies()["wait3@au.com"] == 0
    confirm_through(smtp_sink, "done2@ezweb.ne.jp")
    # After sending: one turns broadcast mail off, one leaves, one moves the address to slot 3.
    option_off.receive_broadcasts = False
    option_off.save()
    deregister(gone)
    Address.objects.filter(registrant=moved).update(slot=3)

    assert send_reminder(broadcast, staff) == 2
    assert Broadcast.objects.get(pk=broadcast.pk).status == BroadcastStatus.SENDING
    run_until_quiet()

    assert smtp_sink.copies() == {
        "done1@docomo.ne.jp": 1,
        "done2@ezweb.ne.jp": 1,
        "wait1@docomo.ne.jp": 2,
        "wait2@ezweb.ne.jp": 2,
        "off@docomo.ne.jp": 1,
        "gone@docomo.ne.jp": 1,
        "moved@docomo.ne.jp": 1,
    }
    first, again = smtp_sink.to("wait1@docomo.ne.jp")
    assert not str(first["Subject"]).startswith("【再送】")
    assert again["Subject"] == "【再送】不審者情報"
    assert link(again) == link(first)  # the same link: confirming from either mail counts once
    assert "まだ受信確認がお済みでない" in text(again)
    assert "まだ受信確認がお済みでない" not in text(first)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.reminders_sent) == (BroadcastStatus.SENT, 1)
    reminder = Reminder.objects.get()
    assert (reminder.number, reminder.created_by, reminder.messages) == (1, staff, 2)
    assert set(Delivery.objects.filter(round=1).values_list("email", flat=True)) == {
        "wait1@docomo.ne.jp",
        "wait2@ezweb.ne.jp",
    }


def test_a_shared_sibling_address_goes_again_while_either_child_is_unconfirmed(smtp_sink: Sink) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["family@au.com"], grade=5)
    make_registrant(school, ["FAMILY@au.com", "own@docomo.ne.jp"], grade=2)
    broadcast = sent_broadcast(staff)
    confirm_through(smtp_sink, "own@docomo.ne.jp")  # the younger child only

    assert send_reminder(broadcast, staff) == 1
    run_until_quiet()
    copies = {address.lower(): n for address, n in smtp_sink.copies().items()}
    assert copies == {"family@au.com": 2, "own@docomo.ne.jp": 1}

    shared = Delivery.objects.get(broadcast=broadcast, email__iexact="family@au.com")
    record_confirmation(shared)  # now both
    with pytest.raises(ReminderRefused, match="確認"):
        send_reminder(broadcast, staff)
    assert Reminder.objects.count() == 1


def test_automatic_reminders_fire_from_the_sweep_when_due_and_no_more(smtp_sink: Sink) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["wait@docomo.ne.jp"])
    broadcast = sent_broadcast(staff, reminder_minutes=(60, 30))
    assert broadcast.reminder_minutes == [30, 60]

    def minutes_ago(minutes: int) -> None:
        Broadcast.objects.filter(pk=broadcast.pk).update(
            send_requested_at=timezone.now() - timedelta(minutes=minutes)
        )

    minutes_ago(29)
    assert sweep()["reminders"] == 0
    minutes_ago(31)
    assert sweep()["reminders"] == 1
    assert sweep()["reminders"] == 0  # the next is due at 60 minutes; also sending still
    run_until_quiet()
    assert sweep()["reminders"] == 0
    assert smtp_sink.copies()["wait@docomo.ne.jp"] == 2
    minutes_ago(24 * 60)
    assert sweep()["reminders"] == 1
    run_until_quiet()
    assert sweep()["reminders"] == 0  # both configured reminders went
    assert smtp_sink.copies()["wait@docomo.ne.jp"] == 3
    assert [(r.number, r.created_by, r.messages) for r in Reminder.objects.order_by("number")] == [
        (1, None, 1),
        (2, None, 1),
    ]


def test_reminders_stop_at_the_maximum_and_once_the_links_expire(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["wait@docomo.ne.jp"])
    broadcast = sent_broadcast(staff, reminder_minutes=(30, 60))
    settings.MIMAMORI_MAX_REMINDERS = 1
    Broadcast.objects.filter(pk=broadcast.pk).update(send_requested_at=timezone.now() - timedelta(days=1))
    assert sweep()["reminders"] == 1
    run_until_quiet()
    assert sweep()["reminders"] == 0
    with pytest.raises(ReminderRefused, match="上限"):
        send_reminder(broadcast, staff)
    assert smtp_sink.copies()["wait@docomo.ne.jp"] == 2

    settings.MIMAMORI_MAX_REMINDERS = 3
    Broadcast.objects.filter(pk=broadcast.pk).update(
        send_requested_at=timezone.now() - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)
    )
    with pytest.raises(ReminderRefused, match="期限"):
        send_reminder(broadcast, staff)
    assert sweep()["reminders"] == 0


def test_reminders_are_refused_without_confirmation_and_while_sending(smtp_sink: Sink) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["wait@docomo.ne.jp"])
    plain = sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff))
    with pytest.raises(ValidationError) as refused:
        sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff), reminder_minutes=[30])
    assert "reminder_minutes" in refused.value.message_dict
    with pytest.raises(ReminderRefused):
        send_reminder(plain, staff)
    broadcast = sent_broadcast(staff)
    assert send_reminder(broadcast, staff) == 1
    with pytest.raises(ReminderRefused, match="送信中"):
        send_reminder(broadcast, staff)


def test_staff_send_a_reminder_from_the_console_and_see_it_listed(smtp_sink: Sink) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school, username="tanaka")
    make_registrant(school, ["wait@docomo.ne.jp"])
    client = signed_in(staff)
    form = client.get(reverse("console:broadcast_new")).content.decode()
    assert "未確認者への自動再送" in form
    assert "30分後" in form
    composed = client.post(
        reverse("console:broadcast_new"),
        {
            "subject": "不審者情報",
            "body": "注意",
            "request_confirmation": "on",
            "reminder_minutes": ["30", "120"],
        },
    )
    assert composed.status_code == 302
    broadcast = Broadcast.objects.get()
    assert broadcast.reminder_minutes == [30, 120]
    client.post(reverse("console:broadcast_send", args=[broadcast.pk]))
    run_until_quiet()
    detail = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "未確認者に再送" in detail
    assert "30分後、120分後" in detail

    sent = client.post(reverse("console:broadcast_remind", args=[broadcast.pk]), follow=True)
    assert "1件のアドレスに再送" in sent.content.decode()
    run_until_quiet()
    assert smtp_sink.copies()["wait@docomo.ne.jp"] == 2
    detail = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert re.search(r"<td>1</td><td>[^<]+</td><td>tanaka</td><td>1</td>", detail)

    other = signed_in(make_staff(Role.SCHOOL, school=make_school()))
    assert other.post(reverse("console:broadcast_remind", args=[broadcast.pk])).status_code == 404
    assert Reminder.objects.count() == 1


def test_staff_send_and_list_reminders_through_the_api(smtp_sink: Sink) -> None:
    school = make_school()
    api = Api(make_staff(Role.SCHOOL, school=school, username="suzuki"))
    make_registrant(school, ["wait@docomo.ne.jp", "wait2@ezweb.ne.jp"])
    body = {
        "scope": {},
        "subject": "不審者情報",
        "body": "注意",
        "request_confirmation": True,
        "reminder_minutes": [60],
    }
    created = api.post("/broadcasts", body)
    assert created.status_code == 201
    assert created.json()["reminder_minutes"] == [60]
    broadcast_id = created.json()["id"]
    api.post(f"/broadcasts/{broadcast_id}/send")
    run_until_quiet()

    sent = api.post(f"/broadcasts/{broadcast_id}/reminders")
    assert (sent.status_code, sent.json()) == (202, {"reminder": 1, "messages": 2})
    assert api.post(f"/broadcasts/{broadcast_id}/reminders").status_code == 409  # still sending
    run_until_quiet()
    (listed,) = api.get(f"/broadcasts/{broadcast_id}/reminders").json()
    assert listed["number"] == 1
    assert listed["automatic"] is False
    assert listed["sent_by"] == "suzuki"
    assert listed["messages"] == 2
    assert smtp_sink.copies()["wait2@ezweb.ne.jp"] == 2

    other = Api(make_staff(Role.SCHOOL, school=make_school()))
    assert other.post(f"/broadcasts/{broadcast_id}/reminders").status_code == 404
    assert other.get(f"/broadcasts/{broadcast_id}/reminders").status_code == 404
    plain = api.post("/broadcasts", {**body, "request_confirmation": False})
    assert plain.status_code == 422
    assert plain.json()["detail"][0]["loc"] == ["body", "reminder_minutes"]


def test_a_municipality_without_confirmation_links_is_not_offered_them(smtp_sink: Sink) -> None:
    quiet = make_municipality(name="静か市", confirmation_links_enabled=False)
    school: School = make_school(quiet)
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["family@docomo.ne.jp"])

    client = signed_in(staff)
    form = client.get(reverse("console:broadcast_new")).content.decode()
    assert "受信確認を求める" not in form
    assert "未確認者への自動再送" not in form
    posted = client.post(
        reverse("console:broadcast_new"),
        {"subject": "s", "body": "b", "request_confirmation": "on", "reminder_minutes": ["30"]},
    )
    assert posted.status_code == 302
    drafted = Broadcast.objects.get()
    assert (drafted.request_confirmation, drafted.reminder_minutes) == (False, [])

    with pytest.raises(ValidationError) as refused:
        sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff), request_confirmation=True)
    assert "静か市" in refused.value.message_dict["request_confirmation"][0]
    api = Api(staff)
    asked = {"scope": {}, "subject": "s", "body": "b", "request_confirmation": True, "reminder_minutes": [30]}
    answer = api.post("/broadcasts", asked)
    assert answer.status_code == 422
    assert [e["loc"] for e in answer.json()["detail"]] == [["body", "request_confirmation"]]
    assert Broadcast.objects.count() == 1

    # What staff can send there carries no link, and no reminder can follow it.
    client.post(reverse("console:broadcast_send", args=[drafted.pk]))
    run_until_quiet()
    assert "/c/" not in text(smtp_sink.to("family@docomo.ne.jp")[0])
    with pytest.raises(ReminderRefused):
        send_reminder(drafted, staff)
    detail = client.get(reverse("console:broadcast", args=[drafted.pk])).content.decode()
    assert "未確認者に再送" not in detail


def test_a_draft_sent_after_the_municipality_turned_links_off_carries_none(smtp_sink: Sink) -> None:
    city = make_municipality()
    school = make_school(city)
    staff = make_staff(Role.SCHOOL, school=school)
    make_registrant(school, ["family@docomo.ne.jp"])
    drafted = sending.compose(
        staff,
        subject="s",
        body="b",
        scope=resolve_scope(staff),
        request_confirmation=True,
        reminder_minutes=[30],
    )
    city.confirmation_links_enabled = False
    city.save()
    sending.send(drafted)
    run_until_quiet()
    drafted.refresh_from_db()
    assert (drafted.request_confirmation, drafted.reminder_minutes) == (False, [])
    assert "/c/" not in text(smtp_sink.to("family@docomo.ne.jp")[0])
    assert Delivery.objects.get().confirmation_token is None

"""Broadcasts end to end on the embedded engine: compose, target, fan out, deliver over real SMTP."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import School
from mimamori.registry.registrants import deregister
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import fan_out_everything, run_queued_tasks, run_until_quiet

pytestmark = pytest.mark.django_db


def send_to_school(staff: User, school: School, **fields: Any) -> Broadcast:
    scope = resolve_scope(staff, school_ids=[school.pk], grades=fields.pop("grades", ()))
    broadcast = sending.compose(
        staff,
        subject=fields.pop("subject", "不審者情報"),
        body=fields.pop("body", "下校時に注意してください。"),
        scope=scope,
        **fields,
    )
    assert sending.send(broadcast)
    run_until_quiet()
    broadcast.refresh_from_db()
    return broadcast


def test_exactly_the_right_addresses_get_exactly_one_mail(smtp_sink: Sink) -> None:
    school = make_school(name="緑小学校", local="midori-sho")
    staff = make_staff(Role.SCHOOL, school=school)
    full = make_registrant(
        school, ["one@docomo.ne.jp", "two@ezweb.ne.jp", "three@gmail.com", "four@yahoo.co.jp"]
    )
    make_registrant(school, ["off@docomo.ne.jp", "off2@docomo.ne.jp"], receive_broadcasts=False)
    gone = make_registrant(school, ["gone@docomo.ne.jp"])
    deregister(gone)
    older = make_registrant(school, ["family@au.com", "papa@softbank.ne.jp"], child_name="見守 一郎", grade=5)
    younger = make_registrant(school, ["FAMILY@au.com"], child_name="見守 花子", grade=2)
    make_registrant(school, ["same@i.softbank.jp", None, "same2@i.softbank.jp"])
    other_school = make_school(full.school.municipality)
    make_registrant(other_school, ["elsewhere@docomo.ne.jp"])

    broadcast = send_to_school(staff, school)

    assert broadcast.status == BroadcastStatus.SENT
    expected = {
        "one@docomo.ne.jp",
        "two@ezweb.ne.jp",
        "family@au.com",
        "papa@softbank.ne.jp",
        "same@i.softbank.jp",
    }
    # Siblings' "family@au.com" and "FAMILY@au.com" are one mailbox: one mail.
    assert {address.lower(): n for address, n in smtp_sink.copies().items()} == dict.fromkeys(expected, 1)
    assert broadcast.registrant_count == 4
    assert broadcast.message_count == 5
    family = next(m for r, m in smtp_sink.messages if r.lower() == "family@au.com")
    assert family["From"].addresses[0].addr_spec == "midori-sho@" + school.municipality.mail_domain
    assert family["From"].addresses[0].display_name == "緑小学校"
    text = family.get_body().get_content()  # type: ignore[union-attr]
    assert "見守 一郎" in text
    assert "見守 花子" in text
    assert "下校時に注意してください。" in text
    assert family["Content-Transfer-Encoding"] == "base64"
    message_ids = {m["Message-ID"] for _, m in smtp_sink.messages}
    assert len(message_ids) == 5
    assert set(Delivery.objects.filter(broadcast=broadcast).values_list("status", flat=True)) == {"accepted"}
    progress = sending.progress(broadcast)
    assert (progress.registrants, progress.messages, progress.sent, progress.failed, progress.pending) == (
        4,
        5,
        5,
        0,
        0,
    )
    assert {older.pk, younger.pk} <= set(broadcast.recipients.values_list("registrant", flat=True))


def test_one_address_cannot_sit_in_two_slots_of_one_child() -> None:
    # So an address "repeated in slots 1 and 2" can only be the siblings case above, which
    # the fan-out merges; the database refuses it within one registrant.
    registrant = make_registrant(make_school(), ["a@docomo.ne.jp", "b@docomo.ne.jp"])
    with pytest.raises(IntegrityError), transaction.atomic():
        registrant.addresses.filter(slot=2).update(email="A@docomo.ne.jp")


def test_grades_narrow_the_audience(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["third@docomo.ne.jp"], grade=3)
    make_registrant(school, ["fifth@docomo.ne.jp"], grade=5)
    send_to_school(make_staff(Role.SCHOOL, school=school), school, grades=[5])
    assert smtp_sink.copies() == {"fifth@docomo.ne.jp": 1}


def test_municipality_setting_can_name_other_slots(smtp_sink: Sink) -> None:
    city = make_municipality(broadcast_slots=[1, 2, 3])
    school = make_school(city)
    make_registrant(school, ["one@docomo.ne.jp", None, "three@docomo.ne.jp", "four@docomo.ne.jp"])
    send_to_school(make_staff(Role.SCHOOL, school=school), school)
    assert smtp_sink.copies() == {"one@docomo.ne.jp": 1, "three@docomo.ne.jp": 1}


def test_temporary_refusals_are_retried_until_accepted(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["busy@docomo.ne.jp", "fine@docomo.ne.jp"])
    smtp_sink.refusals["busy@docomo.ne.jp"] = ["451 4.3.0 Try again later", "421 4.7.0 Too many connections"]
    broadcast = send_to_school(make_staff(Role.SCHOOL, school=school), school)
    assert smtp_sink.copies() == {"busy@docomo.ne.jp": 1, "fine@docomo.ne.jp": 1}
    assert smtp_sink.attempts["busy@docomo.ne.jp"] == 3
    busy = Delivery.objects.get(broadcast=broadcast, email="busy@docomo.ne.jp")
    assert (busy.status, busy.attempts) == (DeliveryStatus.ACCEPTED, 3)
    assert busy.accepted_at is not None
    assert broadcast.status == BroadcastStatus.SENT


def test_permanent_refusal_is_recorded_with_the_reply_and_can_be_retried(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["nobody@docomo.ne.jp", "fine@docomo.ne.jp"])
    smtp_sink.refusals["nobody@docomo.ne.jp"] = ["552 5.2.2 Mailbox full"]
    broadcast = send_to_school(make_staff(Role.SCHOOL, school=school), school)
    failed = Delivery.objects.get(broadcast=broadcast, email="nobody@docomo.ne.jp")
    assert failed.status == DeliveryStatus.FAILED
    assert failed.reply == "552 5.2.2 Mailbox full"
    assert broadcast.status == BroadcastStatus.SENT
    assert sending.progress(broadcast).failed == 1

    smtp_sink.refusals.clear()
    assert sending.retry_failed(broadcast) == 1
    run_until_quiet()
    broadcast.refresh_from_db()
    assert smtp_sink.copies() == {"nobody@docomo.ne.jp": 1, "fine@docomo.ne.jp": 1}
    assert broadcast.status == BroadcastStatus.SENT


def test_retries_stop_at_the_limit(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_RETRY_MAX_ATTEMPTS = 3
    school = make_school()
    make_registrant(school, ["busy@docomo.ne.jp"])
    smtp_sink.refusals["busy@docomo.ne.jp"] = ["451 4.3.0 later"] * 10
    broadcast = send_to_school(make_staff(Role.SCHOOL, school=school), school)
    row = Delivery.objects.get(broadcast=broadcast)
    assert (row.status, row.attempts, row.reply) == (DeliveryStatus.FAILED, 3, "451 4.3.0 later")
    assert smtp_sink.copies() == {}


def test_a_sink_that_is_down_gets_the_mail_once_it_is_back(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    make_registrant(school, ["waiting@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    settings.MIMAMORI_RETRY_BASE_SECONDS = 1
    real_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = 1  # nothing listens there: connection refused
    broadcast = sending.compose(staff, subject="休校", body="明日は休校です。", scope=resolve_scope(staff))
    sending.send(broadcast)
    run_queued_tasks()
    row = Delivery.objects.get(broadcast=broadcast)
    assert (row.status, row.attempts) == (DeliveryStatus.DEFERRED, 1)
    assert row.reply.startswith("connection")
    settings.EMAIL_PORT = real_port
    time.sleep(1.1)  # the retry's turn comes after the backoff
    run_until_quiet()
    broadcast.refresh_from_db()
    assert smtp_sink.copies() == {"waiting@docomo.ne.jp": 1}
    assert broadcast.status == BroadcastStatus.SENT


def test_sending_twice_sends_once(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["once@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff))
    assert sending.send(broadcast)
    assert not sending.send(broadcast)
    run_until_quiet()
    assert smtp_sink.copies() == {"once@docomo.ne.jp": 1}


def test_staff_cannot_target_outside_their_scope() -> None:
    school, other = make_school(), make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    with pytest.raises(ValidationError) as caught:
        resolve_scope(staff, school_ids=[other.pk])
    assert "schools" in caught.value.message_dict
    city_staff = make_staff(Role.MUNICIPALITY, municipality=school.municipality)
    with pytest.raises(ValidationError):
        resolve_scope(city_staff, municipality_codes=[other.municipality.code])
    with pytest.raises(ValidationError):
        resolve_scope(make_staff(Role.CENTRE))
    assert resolve_scope(staff).schools == (school,)


def test_a_broadcast_that_would_reach_nobody_is_refused_with_the_reason() -> None:
    school = make_school()
    make_registrant(school, ["off@example.jp"], receive_broadcasts=False)
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject="不審者情報", body="本文", scope=resolve_scope(staff, school_ids=[school.pk])
    )
    with pytest.raises(sending.NoRecipients) as refused:
        sending.send(broadcast, by=staff)
    assert "受け取る人がいません" in refused.value.messages[0]
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.DRAFT
    assert broadcast.send_requested_at is None


def test_an_audience_that_empties_after_send_is_finished_at_once(smtp_sink: Sink) -> None:
    school = make_school()
    registrant = make_registrant(school, ["only@example.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject="不審者情報", body="本文", scope=resolve_scope(staff, school_ids=[school.pk])
    )
    assert sending.send(broadcast, by=staff)
    deregister(registrant)  # between send and the fan-out
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert broadcast.message_count == 0
    assert smtp_sink.copies() == {}


def test_each_staff_member_sees_only_broadcasts_wholly_in_scope() -> None:
    from mimamori.broadcasts.access import broadcasts_for

    city = make_municipality()
    school, sibling_school = make_school(city), make_school(city)
    other_city_school = make_school()
    own_staff = make_staff(Role.SCHOOL, school=school)
    sibling_staff = make_staff(Role.SCHOOL, school=sibling_school)
    city_staff = make_staff(Role.MUNICIPALITY, municipality=city)
    other_city_staff = make_staff(Role.MUNICIPALITY, municipality=other_city_school.municipality)
    centre = make_staff(Role.CENTRE)

    def draft(user: User, **scope: Any) -> Broadcast:
        return sending.compose(user, subject="s", body="b", scope=resolve_scope(user, **scope))

    school_only = draft(own_staff)
    city_wide = draft(city_staff)
    two_cities = draft(centre, municipality_codes=[city.code, other_city_school.municipality.code])

    assert list(broadcasts_for(own_staff)) == [school_only]
    assert list(broadcasts_for(sibling_staff)) == []
    assert set(broadcasts_for(city_staff)) == {school_only, city_wide}
    assert list(broadcasts_for(other_city_staff)) == []
    assert set(broadcasts_for(centre)) == {school_only, city_wide, two_cities}


def _lose_queued_work() -> None:
    from django_tasks_db.models import DBTaskResult

    DBTaskResult.objects.all().delete()


def small_slices(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Chunks of `chunk` addresses and one chunk a slice: a handful of registrants spans slices."""
    from mimamori.broadcasts import fanout

    monkeypatch.setattr(fanout, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(fanout, "SLICE_CHUNKS", 1)
    monkeypatch.setattr(fanout, "MAX_SLICE_CHUNKS", 1)


def sending_to_all(staff: User) -> Broadcast:
    broadcast = sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff))
    assert sending.send(broadcast)
    return broadcast


def test_the_sweep_requeues_a_chunk_whose_task_was_lost(smtp_sink: Sink, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from mimamori.broadcasts.fanout import fan_out
    from mimamori.tasking.sweep import sweep

    school = make_school()
    make_registrant(school, ["lost@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending_to_all(staff)
    fan_out(broadcast.pk)
    _lose_queued_work()
    assert sweep()["requeued_chunks"] == 0  # not overdue yet: a backlog is not a loss

    Delivery.objects.filter(broadcast=broadcast).update(
        next_attempt_at=timezone.now() - timedelta(seconds=settings.MIMAMORI_REQUEUE_AFTER_SECONDS + 1)
    )
    assert sweep()["requeued_chunks"] == 1
    run_until_quiet()
    assert smtp_sink.copies() == {"lost@docomo.ne.jp": 1}
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT


def test_the_sweep_takes_back_rows_of_a_dead_worker(smtp_sink: Sink, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from mimamori.broadcasts.fanout import fan_out
    from mimamori.tasking.sweep import sweep

    school = make_school()
    make_registrant(school, ["held@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending_to_all(staff)
    fan_out(broadcast.pk)
    _lose_queued_work()
    # As a worker killed mid-send leaves them: claimed, lease renewed long ago.
    stale = timezone.now() - timedelta(seconds=settings.MIMAMORI_DELIVERY_LEASE_SECONDS + 1)
    Delivery.objects.filter(broadcast=broadcast).update(status=DeliveryStatus.SENDING, claimed_at=stale)
    report = sweep()
    assert (report["reclaimed"], report["requeued_chunks"]) == (1, 1)
    run_until_quiet()
    assert smtp_sink.copies() == {"held@docomo.ne.jp": 1}


def test_the_first_chunk_leaves_before_the_rest_is_written_and_a_cut_fan_out_resumes(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_tasks_db.models import DBTaskResult

    from mimamori.broadcasts import fanout
    from mimamori.broadcasts.models import Recipient

    small_slices(monkeypatch, 3)
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    # Siblings share an address in chunk 0 (a…) and one in a later chunk (z…).
    make_registrant(school, ["a-family@au.com", "m1@au.com"], child_name="見守 一郎")
    make_registrant(school, ["a-family@au.com", "z-family@au.com"], child_name="見守 花子")
    make_registrant(school, ["z-family@au.com"], child_name="見守 三郎")
    for n in range(5):
        make_registrant(school, [f"b{n}@docomo.ne.jp"])
    broadcast = sending_to_all(staff)
    _lose_queued_work()

    real_insert = fanout._insert_deliveries

    def cut_after_the_first_chunk(broadcast: Broadcast, **slice: Any) -> int:
        if slice["first_chunk"] > 0:
            raise RuntimeError("worker killed")
        return real_insert(broadcast, **slice)

    monkeypatch.setattr(fanout, "_insert_deliveries", cut_after_the_first_chunk)
    assert fanout.fan_out(broadcast.pk) == 3  # the first slice, one chunk, is written and queued
    with pytest.raises(RuntimeError):
        fanout.fan_out(broadcast.pk, 1)  # the task for the next slice is cut off
    broadcast.refresh_from_db()
    assert broadcast.fanned_out_at is None
    first = Delivery.objects.filter(broadcast=broadcast)
    assert sorted(first.values_list("email", flat=True)) == [
        "a-family@au.com",
        "b0@docomo.ne.jp",
        "b1@docomo.ne.jp",
    ]
    assert {r.registrant.child_name for r in Recipient.objects.filter(delivery__email="a-family@au.com")} == {
        "見守 一郎",
        "見守 花子",
    }
    queued = [(t.task_path.rsplit(".", 1)[1], t.args_kwargs["args"]) for t in DBTaskResult.objects.all()]
    # The chunk, and the next slice queued right after it in the same transaction.
    assert queued == [("deliver_chunk", [broadcast.pk, 0]), ("fan_out_broadcast", [broadcast.pk, 1])]
    assert sending.progress(broadcast).messages == 3

    monkeypatch.setattr(fanout, "_insert_deliveries", real_insert)
    assert fanout.fan_out(broadcast.pk, 1) == 3  # run again, the task carries on where it stopped
    assert fanout.fan_out(broadcast.pk, 1) == 0  # and a twin of it finds the slice written
    fan_out_everything(broadcast)
    chunks = DBTaskResult.objects.filter(task_path__endswith="deliver_chunk")
    assert sorted(t.args_kwargs["args"][1] for t in chunks) == [0, 1, 2]
    assert Recipient.objects.filter(broadcast=broadcast).count() == 10
    assert {r.registrant.child_name for r in Recipient.objects.filter(delivery__email="z-family@au.com")} == {
        "見守 花子",
        "見守 三郎",
    }
    run_until_quiet()
    addresses = ["a-family@au.com", "m1@au.com", "z-family@au.com"] + [f"b{n}@docomo.ne.jp" for n in range(5)]
    assert smtp_sink.copies() == dict.fromkeys(addresses, 1)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.message_count, broadcast.registrant_count) == (
        BroadcastStatus.SENT,
        8,
        8,
    )


def test_an_address_changed_behind_the_fan_out_still_gets_the_mail(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mimamori.broadcasts import fanout
    from mimamori.registry.models import Address

    small_slices(monkeypatch, 2)
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    for n in range(4):
        make_registrant(school, [f"b{n}@docomo.ne.jp"])
    moving = make_registrant(school, ["y-moving@au.com"])
    real_insert = fanout._insert_deliveries
    calls = []

    def change_on_the_second_slice(broadcast: Broadcast, **slice: Any) -> int:
        calls.append(slice["first_chunk"])
        if len(calls) == 2:  # chunk 0 (b0, b1) is written: the guardian changes the address
            Address.objects.filter(registrant=moving).update(email="a-moved@au.com")
        return real_insert(broadcast, **slice)

    monkeypatch.setattr(fanout, "_insert_deliveries", change_on_the_second_slice)
    broadcast = sending_to_all(staff)
    run_until_quiet()
    assert smtp_sink.copies() == dict.fromkeys(
        ["b0@docomo.ne.jp", "b1@docomo.ne.jp", "b2@docomo.ne.jp", "b3@docomo.ne.jp", "a-moved@au.com"], 1
    )
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.message_count, broadcast.registrant_count) == (
        BroadcastStatus.SENT,
        5,
        5,
    )


def test_the_classes_are_counted_while_the_rest_is_written(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db.models import Sum

    from mimamori.broadcasts import fanout
    from mimamori.broadcasts.models import AudienceGroup

    small_slices(monkeypatch, 2)
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    for n in range(5):
        make_registrant(school, [f"b{n}@docomo.ne.jp", f"c{n}@docomo.ne.jp"], grade=1 + n % 2)

    def stopped(broadcast: Broadcast) -> int:
        raise RuntimeError("stopped before the end")

    monkeypatch.setattr(fanout, "_finish", stopped)
    broadcast = sending_to_all(staff)
    _lose_queued_work()
    with pytest.raises(RuntimeError):
        fan_out_everything(broadcast)
    groups = AudienceGroup.objects.filter(broadcast=broadcast)
    assert dict(groups.values_list("grade", "registrants")) == {1: 3, 2: 2}
    assert groups.aggregate(n=Sum("registrants"))["n"] == 5


@pytest.mark.django_db(transaction=True)  # the statistics count committed rows
def test_a_fan_out_first_analyzes_registry_tables_whose_statistics_are_out_of_date(settings: Any) -> None:
    """Rows a roster import (or a restore) wrote that the statistics do not know of yet make
    the fan-out read the whole audience for every slice (docs/performance.md)."""
    from django.db import connection

    from mimamori.broadcasts import fanout
    from tests.test_engines import bulk_registrants

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("PostgreSQL's planner statistics")

    def last_analyzed() -> dict[str, Any]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, COALESCE(last_analyze, last_autoanalyze) FROM pg_stat_user_tables"
                " WHERE relname IN ('registry_address', 'registry_registrant')"
            )
            return dict(cursor.fetchall())

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE registry_address, registry_registrant")  # of empty tables
    before = last_analyzed()
    bulk_registrants(make_school(), 1500, "stale")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # the counts, at this transaction's end
    fanout._plan_with_fresh_statistics()
    after = last_analyzed()
    assert all(after[table] > before[table] for table in before), (before, after)

    fanout._plan_with_fresh_statistics()  # now they are up to date: nothing to do
    assert last_analyzed() == after


def test_a_broadcast_is_called_sent_in_one_statement_that_sees_its_last_slice(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked and marked on one snapshot: with two statements, a slice that committed between
    them (rows and "fanned out" together) got its broadcast called sent undelivered."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mimamori.broadcasts import fanout
    from mimamori.broadcasts.delivery import deliver_chunk, finish_if_done

    small_slices(monkeypatch, 2)
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    for n in range(4):
        make_registrant(school, [f"b{n}@docomo.ne.jp"])
    broadcast = sending_to_all(staff)
    _lose_queued_work()
    assert fanout.fan_out(broadcast.pk) == 2  # chunk 0
    deliver_chunk(broadcast.pk, 0)  # delivered before the rest is written
    assert fanout.fan_out(broadcast.pk, 1) == 2  # the last slice, chunk 1, still open
    assert fanout.fan_out(broadcast.pk, 2) == 0  # nothing left: fanned out
    assert not finish_if_done(broadcast.pk)
    deliver_chunk(broadcast.pk, 1)
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.SENDING)
    with CaptureQueriesContext(connection) as queries:
        assert finish_if_done(broadcast.pk)
    assert len(queries) == 1  # nothing can commit between looking and marking
    assert smtp_sink.copies() == {f"b{n}@docomo.ne.jp": 1 for n in range(4)}

"""到達テスト (B4): a test mail to every address of a school, its results per address within the
hour, bounces included, and the dead addresses listed for follow-up.

Through the real paths: the console's pages start a test, the outbox's tasks send to a real SMTP
sink that refuses as told, bounces come through `mimamori bounce`, the schedule is the sweep's
own step.
"""

from __future__ import annotations

import threading
import time as clock
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.mail import verp
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry import reachtests
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Address, AddressStatus, ReachTest, ReachTestSlot, School
from mimamori.registry.registrants import deregister
from mimamori.registry.retention import erase_expired
from mimamori.tasking.sweep import sweep
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_address_health import bounce, dsn

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def start_from_the_console(client: Client, school: School) -> ReachTest:
    """The school page's button, the confirmation page, and its button."""
    url = reverse("console:reach_test_new", args=[school.pk])
    assert url in client.get(reverse("console:school", args=[school.pk])).content.decode()
    assert client.get(url).status_code == 200
    response = client.post(url)
    assert response.status_code == 302, response
    test = ReachTest.objects.filter(school=school).first()
    assert test is not None
    assert response["Location"] == reverse("console:reach_test", args=[test.pk])
    return test


def page(client: Client, name: str, *args: object, query: str = "") -> str:
    response = client.get(reverse(f"console:{name}", args=args) + query)
    assert response.status_code == 200
    return response.content.decode()


def started_by_sweep(now: datetime) -> int:
    """The sweep's step at ``now``: how many tests it started."""
    return reachtests.due_reach_tests(now)["reach_tests_started"]


def day(hour: int, days: int = 0) -> datetime:
    """Today (plus ``days``) at ``hour`` o'clock, local time."""
    return timezone.make_aware(datetime.combine(timezone.localdate() + timedelta(days=days), time(hour)))


def test_a_test_mails_every_address_of_every_slot_once_and_leaves_out_suppressed_ones(
    smtp_sink: Sink,
) -> None:
    city = make_municipality(broadcast_slots=[1, 2])
    school = make_school(city)
    older = make_registrant(
        school,
        ["mama@docomo.ne.jp", "papa@au.com", "grandma@softbank.ne.jp", "work@example.co.jp"],
        child_name="見守 一郎",
        grade=5,
    )
    # A sibling sharing mama's address (with another case), broadcast mail turned off.
    younger = make_registrant(
        school,
        ["MAMA@docomo.ne.jp", "sis@ezweb.ne.jp"],
        child_name="見守 花子",
        grade=2,
        receive_broadcasts=False,
    )
    gone = make_registrant(school, ["gone@docomo.ne.jp", "fine@au.com"])
    leaving = make_registrant(school, ["left@docomo.ne.jp"])
    deregister(leaving)
    make_registrant(make_school(city), ["elsewhere@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)

    # A first test finds gone@ dead (no such user): it is suppressed at once.
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 <gone@docomo.ne.jp>: User unknown"]
    start_from_the_console(client, school)
    run_until_quiet()
    assert Address.objects.get(email="gone@docomo.ne.jp").status == AddressStatus.SUPPRESSED
    smtp_sink.messages.clear()
    smtp_sink.envelope_senders.clear()

    # The confirmation says how many will be mailed; the second test leaves gone@ out.
    confirm = page(client, "reach_test_new", school.pk)
    assert 'data-addresses="6"' in confirm
    assert "6 件のメールアドレス（登録者 3 人）" in confirm
    assert 'data-suppressed="1"' in confirm
    assert "到達テストのメールを 6 件のアドレスに送る" in confirm
    test = start_from_the_console(client, school)
    run_until_quiet()
    test.refresh_from_db()

    assert smtp_sink.copies() == {
        # The shared address is written as its first row (by grade: the younger child's) has it.
        "MAMA@docomo.ne.jp": 1,
        "papa@au.com": 1,
        "grandma@softbank.ne.jp": 1,
        "work@example.co.jp": 1,
        "sis@ezweb.ne.jp": 1,
        "fine@au.com": 1,
    }
    assert smtp_sink.attempts["gone@docomo.ne.jp"] == 1  # only by the first test
    assert (test.address_count, test.suppressed_count) == (6, 1)
    assert reachtests.counts([test])[test.pk] == reachtests.Counts(sent=6, suppressed=1)
    # Every slot of every active registrant of the school has its row; siblings share the mail.
    slots = ReachTestSlot.objects.filter(reach_test=test)
    assert slots.count() == 4 + 2 + 2
    shared = {row.mail_id for row in slots if row.email.lower() == "mama@docomo.ne.jp"}
    assert len(shared) == 1
    assert None not in shared
    assert slots.get(registrant=gone, slot=1).mail is None

    # One mail names both children, says what it is, and which slot gets no broadcasts.
    (message,) = smtp_sink.to("MAMA@docomo.ne.jp")
    assert "到達テスト" in str(message["Subject"])
    assert message["From"].addresses[0].addr_spec == school.sender_address
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "このメールは「到達テスト」です" in text
    assert "返信や操作の必要はありません" in text
    assert "5年1組 見守 一郎 さん　アドレス1\n" in text
    assert "2年1組 見守 花子 さん　アドレス1（一斉同報メールは配信されません）" in text  # option off
    assert "「変更メニュー」" in text
    (grandma,) = smtp_sink.to("grandma@softbank.ne.jp")
    grandma_body = grandma.get_body(("plain",))
    assert grandma_body is not None
    assert "見守 一郎 さん　アドレス3（一斉同報メールは配信されません）" in grandma_body.get_content()
    # Each mail has its own envelope sender, which names its outbox row.
    (envelope,) = smtp_sink.envelope_senders["papa@au.com"]
    assert verp.read(envelope) == (verp.MAIL, slots.get(registrant=older, slot=2).mail_id)
    assert younger.pk in set(slots.values_list("registrant_id", flat=True))

    event = AuditEvent.objects.filter(action="reach_test.started").order_by("-pk").first()
    assert event is not None
    assert (event.actor, event.target, event.municipality_id) == (staff, f"reachtest {test.pk}", city.pk)
    assert event.details == {"school": school.pk, "scheduled": False}


def test_a_451_then_250_address_is_delivered_once(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["grey@docomo.ne.jp", "ok@au.com"])
    smtp_sink.refusals["grey@docomo.ne.jp"] = ["451 4.7.1 Greylisted, try again"]
    client = signed_in(make_staff(Role.MUNICIPALITY, municipality=school.municipality))
    test = start_from_the_console(client, school)

    run_until_quiet()
    assert smtp_sink.copies() == {"grey@docomo.ne.jp": 1, "ok@au.com": 1}
    assert smtp_sink.attempts["grey@docomo.ne.jp"] == 2
    grey = OutgoingMail.objects.get(to="grey@docomo.ne.jp", kind="reach_test")
    assert (grey.status, grey.attempts, grey.reply) == (OutgoingStatus.SENT, 2, "")
    results = page(client, "reach_test", test.pk)
    assert 'data-count="sent">2<' in results
    assert 'data-count="failed">0<' in results
    assert Address.objects.get(email="grey@docomo.ne.jp").status == AddressStatus.OK


def test_a_550_is_shown_as_failed_suppresses_the_address_and_is_listed_for_follow_up(
    smtp_sink: Sink,
) -> None:
    school = make_school()
    child = make_registrant(school, ["gone.mama@docomo.ne.jp", "papa@au.com"], child_name="見守 花子")
    make_registrant(school, ["fine@au.com"])
    smtp_sink.refusals["gone.mama@docomo.ne.jp"] = ["550 5.1.1 <gone.mama@docomo.ne.jp>: User unknown"]
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)
    test = start_from_the_console(client, school)
    run_until_quiet()

    assert Address.objects.get(email="gone.mama@docomo.ne.jp").status == AddressStatus.SUPPRESSED
    # The guardian hears of it at the slot that works (registry/health.py).
    assert len(smtp_sink.to("papa@au.com")) == 2
    results = page(client, "reach_test", test.pk)
    assert "到達テストの結果" in results
    assert 'data-count="failed" class="error">1<' in results
    assert 'data-count="sent">2<' in results
    assert '<td class="error">失敗</td>' in results
    assert "550 5.1.1 &lt;go***@docomo.ne.jp&gt;: User unknown" in results  # the reply masked too
    assert "gone.mama" not in results
    assert reverse("console:registrant", args=[child.pk]) in results
    assert 'data-follow-up="1"' in results
    failed_only = page(client, "reach_test", test.pk, query="?result=failed")
    assert failed_only.count('data-result="failed"') == 1
    assert 'data-result="sent"' not in failed_only

    # The follow-up list: the school's 「届かないアドレス」 narrowed to this test.
    follow_up = page(client, "undeliverable", school.pk, query=f"?reach_test={test.pk}")
    assert "go***@docomo.ne.jp" in follow_up
    assert "fi***" not in follow_up
    assert "pa***" not in follow_up
    assert reverse("console:registrant", args=[child.pk]) in follow_up
    assert f'undeliverable.csv?reach_test={test.pk}"' in follow_up
    response: Any = client.get(
        reverse("console:undeliverable_csv", args=[school.pk]) + f"?reach_test={test.pk}"
    )
    assert f"undeliverable-{school.pk}-reachtest-{test.pk}.csv" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    rows = text.strip().split("\r\n")
    assert rows[0].startswith('\ufeff"学年","組","児童氏名"')
    assert len(rows) == 2
    assert "見守 花子" in rows[1]
    assert "go***@docomo.ne.jp" in rows[1]
    assert "gone.mama" not in rows[1]
    export = AuditEvent.objects.get(action="export.undeliverable_csv")
    assert (export.actor, export.details) == (staff, {"reach_test": test.pk})

    # Once the guardian sets a working address, nothing is left to follow up.
    set_addresses(child, ["new.mama@docomo.ne.jp", "papa@au.com", "", ""])
    assert "go***" not in page(client, "undeliverable", school.pk, query=f"?reach_test={test.pk}")
    assert 'data-follow-up="0"' in page(client, "reach_test", test.pk)

    # Another school's test cannot be read through this school's report.
    other = make_school(school.municipality)
    other_test = start_from_the_console(signed_in(make_staff(Role.SCHOOL, school=other)), other)
    url = reverse("console:undeliverable", args=[school.pk])
    assert client.get(url + f"?reach_test={other_test.pk}").status_code == 404
    assert client.get(url + "?reach_test=x").status_code == 404


def test_a_later_bounce_fails_the_mail_and_puts_the_address_on_the_follow_up_list(smtp_sink: Sink) -> None:
    school = make_school()
    child = make_registrant(school, ["ghost@ezweb.ne.jp"], child_name="見守 次郎")
    client = signed_in(make_staff(Role.SCHOOL, school=school))
    test = start_from_the_console(client, school)
    run_until_quiet()
    assert 'data-count="sent">1<' in page(client, "reach_test", test.pk)
    assert "gh***" not in page(client, "undeliverable", school.pk, query=f"?reach_test={test.pk}")

    (envelope,) = smtp_sink.envelope_senders["ghost@ezweb.ne.jp"]
    assert bounce(dsn("ghost@ezweb.ne.jp"), envelope).startswith("recorded: mail")
    mail = OutgoingMail.objects.get(kind="reach_test")
    assert mail.status == OutgoingStatus.FAILED
    results = page(client, "reach_test", test.pk)
    assert 'data-count="failed" class="error">1<' in results
    assert 'data-count="sent">0<' in results
    assert "bounce: " in results
    assert "gh***@ezweb.ne.jp" in results
    assert "ghost@" not in results
    follow_up = page(client, "undeliverable", school.pk, query=f"?reach_test={test.pk}")
    assert "gh***@ezweb.ne.jp" in follow_up
    assert reverse("console:registrant", args=[child.pk]) in follow_up
    assert Address.objects.get().status == AddressStatus.SUPPRESSED


def test_a_second_click_while_the_first_test_is_sending_mails_nobody_twice(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["mama@docomo.ne.jp"])
    client = signed_in(make_staff(Role.SCHOOL, school=school))
    url = reverse("console:reach_test_new", args=[school.pk])
    assert client.post(url).status_code == 302
    response = client.post(url, follow=True)
    assert "前回の到達テストのメールをまだ送信しています" in response.content.decode()
    run_until_quiet()
    assert ReachTest.objects.count() == 1
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 1}
    # Once its results are in, another may start.
    assert client.post(url).status_code == 302
    run_until_quiet()
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 2}


def test_staff_see_past_tests_on_the_school_page_in_japanese(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["mama@docomo.ne.jp"])
    smtp_sink.refusals["mama@docomo.ne.jp"] = ["552 5.2.2 Mailbox full"]
    staff = make_staff(Role.SCHOOL, school=school, username="tanaka")
    client = signed_in(staff)
    test = start_from_the_console(client, school)
    run_until_quiet()
    school_page = page(client, "school", school.pk)
    assert "到達テスト" in school_page
    assert "到達テストを送る" in school_page
    assert "定期的な到達テストはありません" in school_page
    assert reverse("console:reach_test", args=[test.pk]) in school_page
    assert "tanaka" in school_page
    results = page(client, "reach_test", test.pk)
    for words in ("送ったアドレス", "送信済み", "送信待ち", "連絡が必要なアドレス", "アドレスごとの結果"):
        assert words in results, words
    # The outbox's list of kinds names it.
    from mimamori.console.views import MAIL_KINDS

    assert str(MAIL_KINDS["reach_test"]) == "到達テストメール"


def test_the_schedule_starts_one_test_per_due_school_in_the_day_one_at_a_time(smtp_sink: Sink) -> None:
    city = make_municipality(reach_test_interval_days=30)
    due_a, due_b = make_school(city), make_school(city)
    recent = make_school(city)
    make_registrant(due_a, ["a@docomo.ne.jp"])
    make_registrant(due_b, ["b@docomo.ne.jp"])
    make_registrant(recent, ["r@docomo.ne.jp"])
    off = make_school(make_municipality(reach_test_interval_days=0))
    make_registrant(off, ["off@docomo.ne.jp"])
    earlier = reachtests.start(recent, by=make_staff(Role.SCHOOL, school=recent))
    ReachTest.objects.filter(pk=earlier.pk).update(started_at=day(10, days=-29))
    ReachTest.objects.create(
        school=due_b, started_at=day(10, days=-31), posted_at=day(10, days=-31), scheduled=True
    )
    run_until_quiet()

    assert started_by_sweep(day(22)) == 0  # never at night
    assert started_by_sweep(day(7)) == 0
    assert not ReachTest.objects.filter(started_at__gte=day(0)).exists()

    assert started_by_sweep(day(10)) == 1
    (first,) = ReachTest.objects.filter(started_at=day(10))
    assert first.school == due_a  # never tested: first
    assert first.scheduled
    assert first.started_by is None
    # Its mails are still queued: the next school waits, however often the sweep runs.
    assert started_by_sweep(day(10)) == 0
    assert started_by_sweep(day(10)) == 0
    run_until_quiet()
    assert started_by_sweep(day(10)) == 1
    run_until_quiet()
    assert started_by_sweep(day(10)) == 0
    assert started_by_sweep(day(17)) == 0
    started = ReachTest.objects.filter(started_at=day(10))
    assert sorted(started.values_list("school_id", flat=True)) == sorted([due_a.pk, due_b.pk])
    assert smtp_sink.copies() == {"a@docomo.ne.jp": 1, "b@docomo.ne.jp": 1, "r@docomo.ne.jp": 1}
    event = AuditEvent.objects.filter(action="reach_test.started", actor=None).first()
    assert event is not None
    assert event.details["scheduled"] is True

    # A day later the school tested 29 days before is due; 30 days on, the others again.
    assert started_by_sweep(day(10, days=1)) == 1
    assert ReachTest.objects.filter(school=recent).count() == 2
    run_until_quiet()
    assert started_by_sweep(day(10, days=1)) == 0
    assert started_by_sweep(day(10, days=30)) == 1
    # The sweep runs it as one of its steps.
    run_until_quiet()
    assert "reach_tests_started" in sweep()


def test_schools_without_addresses_are_each_tested_once_however_often_the_sweep_runs() -> None:
    city = make_municipality(reach_test_interval_days=7)
    schools = [make_school(city) for _ in range(3)]
    for _ in range(6):
        started_by_sweep(day(11))
        run_until_quiet()  # the task that writes each test's (no) mails
    assert sorted(ReachTest.objects.values_list("school_id", flat=True)) == sorted(s.pk for s in schools)
    assert set(ReachTest.objects.values_list("address_count", flat=True)) == {0}


def test_a_test_whose_task_was_lost_is_written_once_by_the_sweep(smtp_sink: Sink, settings: Any) -> None:
    from django_tasks_db.models import DBTaskResult

    school = make_school()
    make_registrant(school, ["mama@docomo.ne.jp", "papa@au.com"])
    test = reachtests.start(school, by=make_staff(Role.SCHOOL, school=school))
    DBTaskResult.objects.all().delete()  # the queue message was lost (a broker restart)

    assert reachtests.due_reach_tests(timezone.now())["reach_tests_requeued"] == 0  # not yet
    later = timezone.now() + timedelta(seconds=settings.MIMAMORI_REQUEUE_AFTER_SECONDS + 1)
    assert reachtests.due_reach_tests(later)["reach_tests_requeued"] == 1
    run_until_quiet()
    assert reachtests.post(test.pk) == 0  # a twin task finds it written
    run_until_quiet()
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 1, "papa@au.com": 1}
    test.refresh_from_db()
    assert test.posted_at is not None
    assert test.address_count == 2
    assert reachtests.due_reach_tests(later)["reach_tests_requeued"] == 0


def test_mails_are_written_in_batches_and_a_crash_resumes_after_the_last_address_written(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reachtests, "BATCH", 2)
    school = make_school()
    make_registrant(school, ["a@docomo.ne.jp", "shared@au.com", "c@softbank.ne.jp"])
    make_registrant(school, ["shared@au.com", "e@docomo.ne.jp"])
    make_registrant(school, ["B@ezweb.ne.jp", "d@au.com"])
    test = reachtests.start(school, by=make_staff(Role.SCHOOL, school=school))
    # A worker wrote the first batch (a@, b@) and died before the next.
    first = reachtests._next_batch(school, after=None)
    assert [group[0].email for group in first] == ["a@docomo.ne.jp", "B@ezweb.ne.jp"]
    assert reachtests._write(test, first) == 2

    run_until_quiet()  # the test's task carries on from there
    assert smtp_sink.copies() == {
        "a@docomo.ne.jp": 1,
        "B@ezweb.ne.jp": 1,
        "c@softbank.ne.jp": 1,
        "d@au.com": 1,
        "e@docomo.ne.jp": 1,
        "shared@au.com": 1,
    }
    test.refresh_from_db()
    assert (test.address_count, test.suppressed_count) == (6, 0)
    assert test.posted_at is not None
    assert ReachTestSlot.objects.filter(reach_test=test).count() == 7


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_start_one_test_of_a_due_school() -> None:
    """Two workers' sweeps find the same school due at once: the row lock makes them take turns
    and the second finds the test the first started."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises whole write transactions; the row lock is PostgreSQL's")
    school = make_school(make_municipality(reach_test_interval_days=30))
    now = day(12)
    done: list[int] = []

    def sweep_in_a_worker() -> None:
        try:
            done.append(started_by_sweep(now))
        finally:
            connections.close_all()

    with transaction.atomic():
        # Hold the school's row, as a sweep starting its test would, while two more sweeps look.
        School.objects.select_for_update().get(pk=school.pk)
        workers = [threading.Thread(target=sweep_in_a_worker) for _ in range(2)]
        for worker in workers:
            worker.start()
        deadline = clock.monotonic() + 10
        while clock.monotonic() < deadline:
            with connection.cursor() as cursor:
                # Inside a transaction the statistics are a snapshot unless cleared.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                (waiting,) = cursor.fetchone()
            if waiting == 2:
                break
            clock.sleep(0.02)
        assert waiting == 2  # both found it due and wait for the row
    for worker in workers:
        worker.join(10)
    assert sorted(done) == [0, 1]
    assert ReachTest.objects.filter(school=school).count() == 1


def test_the_municipality_sets_the_schedule_and_the_change_is_audited(client: Any) -> None:
    from tests.test_municipality_settings import edit

    city = make_municipality()
    centre = make_staff(Role.CENTRE)
    form = page(signed_in(centre), "municipality_settings", city.code)
    assert "到達テストの間隔（日）" in form
    assert edit(centre, city, reach_test_interval_days=90).status_code == 302
    city.refresh_from_db()
    assert city.reach_test_interval_days == 90
    event = AuditEvent.objects.get(action="municipality.settings_changed")
    assert event.details["changes"] == {"reach_test_interval_days": [0, 90]}
    assert "90 日ごと" in page(signed_in(centre), "municipalities")
    school = make_school(city)
    assert "90 日ごとに" in page(signed_in(make_staff(Role.SCHOOL, school=school)), "school", school.pk)


def test_the_api_reads_and_sets_the_schedule() -> None:
    from tests.test_api import Api

    centre = Api(make_staff(Role.CENTRE))
    created = centre.post(
        "/municipalities",
        {
            "code": "chuo",
            "name": "中央市",
            "mail_domain": "mail.chuo.example.jp",
            "settings": {"reach_test_interval_days": 60},
        },
    )
    assert created.status_code == 201, created.json()
    assert created.json()["settings"]["reach_test_interval_days"] == 60
    assert centre.get("/municipalities").json()[0]["settings"]["reach_test_interval_days"] == 60
    refused = centre.post(
        "/municipalities",
        {
            "code": "bad",
            "name": "x",
            "mail_domain": "x.example.jp",
            "settings": {"reach_test_interval_days": -1},
        },
    )
    assert refused.status_code == 422


def test_erasing_a_child_erases_its_test_rows_and_the_mails_only_it_had(
    smtp_sink: Sink, settings: Any
) -> None:
    school = make_school()
    leaving = make_registrant(school, ["own@docomo.ne.jp", "shared@au.com"])
    sibling = make_registrant(school, ["shared@au.com"])
    test = reachtests.start(school, by=make_staff(Role.SCHOOL, school=school))
    run_until_quiet()
    assert OutgoingMail.objects.filter(kind="reach_test").count() == 2

    deregister(leaving)
    settings.MIMAMORI_RETENTION_DAYS = 0
    assert erase_expired(timezone.now() + timedelta(seconds=1)) == 1
    assert list(ReachTestSlot.objects.values_list("registrant_id", "email")) == [
        (sibling.pk, "shared@au.com")
    ]
    assert list(OutgoingMail.objects.filter(kind="reach_test").values_list("to", flat=True)) == [
        "shared@au.com"
    ]
    assert reachtests.counts([test])[test.pk].sent == 1

"""Recording gate passes (B6): what is mailed, once, to whom; what is only recorded."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.gates import passes, readers
from mimamori.gates.models import GateDayCount, GatePass, GatePreference, GateReader, PassOutcome
from mimamori.mail.models import OutgoingMail
from mimamori.registry.models import Address, AddressStatus, Registrant, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db

ADDRESSES = ["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "grandma@au.com", "MAMA@docomo.ne.jp"]


@pytest.fixture
def school() -> School:
    return make_school(make_municipality("minato"), name="港小学校", local="minato-es")


@pytest.fixture
def reader(school: School) -> GateReader:
    staff = make_staff(Role.SCHOOL, school=school)
    made, _token = readers.register(school, "正門", "正門", by=staff)
    return made


def child(school: School, tag: str, addresses: list[str | None] | None = None) -> Registrant:
    registrant = make_registrant(
        school, ADDRESSES[:3] if addresses is None else addresses, child_name="山田太郎"
    )
    registrant.tag_id = tag
    registrant.save(update_fields=["tag_id"])
    return registrant


def event(event_id: str, tag: str, at: datetime, direction: str = "in") -> dict[str, object]:
    return {"id": event_id, "tag": tag, "direction": direction, "at": at.isoformat()}


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def gate_mails() -> list[OutgoingMail]:
    return list(OutgoingMail.objects.filter(kind="gate_pass").order_by("to"))


def test_a_pass_mails_each_chosen_slot_once_from_the_school(
    school: School, reader: GateReader, smtp_sink: Sink
) -> None:
    taro = child(school, "TAG-1")
    GatePreference.objects.create(registrant=taro, slots=[1, 3])
    now = timezone.now()
    at = now - timedelta(minutes=1)

    result = passes.record(reader, [event("e1", "TAG-1", at)], now)
    assert (result.accepted, result.duplicates, result.unknown_tags, result.mails) == (1, 0, 0, 2)
    # On the gates lane, so a broadcast's mails never wait in front of them.
    assert list(DBTaskResult.objects.values_list("queue_name", flat=True)) == ["gates", "gates"]
    run_until_quiet()

    assert sorted(smtp_sink.copies().items()) == [("grandma@au.com", 1), ("mama@docomo.ne.jp", 1)]
    (message,) = smtp_sink.to("mama@docomo.ne.jp")
    local = timezone.localtime(at)
    assert message["Subject"] == f"【登校】山田太郎さん {local.hour}:{local.minute:02d} 正門"
    assert "港小学校" in str(message["From"])
    assert "minato-es@" in str(message["From"])
    body = text_of(message)
    assert "山田太郎さんが登校しました。" in body
    assert "/portal/options/" in body
    recorded = GatePass.objects.get()
    assert (recorded.registrant, recorded.outcome, recorded.mails) == (taro, PassOutcome.MAILED, 2)
    count = GateDayCount.objects.get()
    assert (count.school, count.day, count.direction, count.passes, count.mails) == (
        school,
        timezone.localdate(at),
        "in",
        1,
        2,
    )


def test_without_a_choice_all_four_slots_get_it(school: School, reader: GateReader, smtp_sink: Sink) -> None:
    child(school, "T", ["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "nana@softbank.ne.jp", "gg@au.com"])
    now = timezone.now()
    passes.record(reader, [event("e1", "T", now, "out")], now)
    run_until_quiet()
    assert sorted(smtp_sink.copies().values()) == [1, 1, 1, 1]
    (message,) = smtp_sink.to("papa@ezweb.ne.jp")
    assert str(message["Subject"]).startswith("【下校】")


def test_a_suppressed_address_and_no_chosen_slot_are_not_mailed(school: School, reader: GateReader) -> None:
    taro = child(school, "T1")
    Address.objects.filter(registrant=taro, slot=1).update(status=AddressStatus.SUPPRESSED)
    hanako = child(school, "T2")
    GatePreference.objects.create(registrant=hanako, slots=[])
    now = timezone.now()
    passes.record(reader, [event("a", "T1", now), event("b", "T2", now)], now)
    assert sorted(m.to for m in gate_mails()) == ["grandma@au.com", "papa@ezweb.ne.jp"]
    assert GatePass.objects.get(event_id="b").outcome == PassOutcome.NO_ADDRESS


def test_the_same_event_again_mails_nothing_and_counts_as_a_duplicate(
    school: School, reader: GateReader
) -> None:
    child(school, "TAG-1")
    now = timezone.now()
    batch = [event("e1", "TAG-1", now)]
    assert passes.record(reader, batch, now).accepted == 1
    mailed = OutgoingMail.objects.count()
    again = passes.record(reader, batch + batch, now + timedelta(seconds=5))
    assert (again.accepted, again.duplicates) == (0, 2)
    assert OutgoingMail.objects.count() == mailed == 3
    assert GatePass.objects.count() == 1
    assert GateDayCount.objects.get().passes == 1


def test_another_schools_reader_does_not_reach_the_child(school: School, reader: GateReader) -> None:
    child(school, "TAG-1")
    other = make_school(school.municipality, name="港中学校", local="minato-jhs")
    outsider, _token = readers.register(other, "東門", by=None)
    now = timezone.now()
    result = passes.record(outsider, [event("e1", "TAG-1", now)], now)
    assert (result.accepted, result.unknown_tags) == (1, 1)
    assert GatePass.objects.get().registrant is None
    assert gate_mails() == []
    assert [t.tag for t in passes.unknown_tags(other)] == ["TAG-1"]
    assert passes.unknown_tags(school) == []


def test_an_old_backlog_is_recorded_not_mailed_and_a_clock_ahead_too(
    school: School, reader: GateReader
) -> None:
    child(school, "T1")
    now = timezone.now()
    backlog = [event(f"b{n}", "T1", now - timedelta(minutes=40 + n * 5)) for n in range(3)]
    ahead = event("f", "T1", now + timedelta(minutes=10), "out")
    result = passes.record(reader, [*backlog, ahead], now)
    assert result.accepted == 4
    assert set(GatePass.objects.values_list("outcome", flat=True)) == {PassOutcome.OLD}
    assert gate_mails() == []
    assert GateDayCount.objects.filter(direction="in").get().passes == 3


def test_a_read_within_the_repeat_window_is_one_pass(
    school: School, reader: GateReader, settings: object
) -> None:
    child(school, "T1")
    now = timezone.now()
    first = now - timedelta(minutes=5)
    batch = [
        event("1", "T1", first),
        event("2", "T1", first + timedelta(seconds=30)),  # lingering at the gate
        event("3", "T1", first + timedelta(seconds=40), "out"),  # the other direction: a pass
    ]
    passes.record(reader, batch, now)
    later = passes.record(reader, [event("4", "T1", first + timedelta(seconds=100))], now)  # a later post
    assert later.accepted == 1
    outcomes = dict(GatePass.objects.values_list("event_id", "outcome"))
    assert outcomes == {
        "1": PassOutcome.MAILED,
        "2": PassOutcome.REPEAT,
        "3": PassOutcome.MAILED,
        "4": PassOutcome.REPEAT,
    }
    assert OutgoingMail.objects.count() == 2 * 3


def test_unknown_tags_are_reported_with_count_last_seen_and_reader(
    school: School, reader: GateReader
) -> None:
    now = timezone.now()
    gate2, _token = readers.register(school, "裏門", by=None)
    passes.record(reader, [event("1", "LOST", now - timedelta(minutes=3))], now)
    passes.record(gate2, [event("1", "LOST", now - timedelta(minutes=1)), event("2", "NEW", now)], now)
    found = passes.unknown_tags(school)
    assert [(t.tag, t.count, t.reader) for t in found] == [("NEW", 1, gate2), ("LOST", 2, gate2)]
    assert found[1].last_seen == (now - timedelta(minutes=1)).replace(
        microsecond=found[1].last_seen.microsecond
    )
    child(school, "NEW")  # entered since: no longer reported
    assert [t.tag for t in passes.unknown_tags(school)] == ["LOST"]


@pytest.mark.parametrize(
    "bad",
    [
        {"id": "", "tag": "T", "direction": "in", "at": "2026-04-08T07:58:00+09:00"},
        {"id": "a\nb", "tag": "T", "direction": "in", "at": "2026-04-08T07:58:00+09:00"},
        {"id": "x" * 65, "tag": "T", "direction": "in", "at": "2026-04-08T07:58:00+09:00"},
        {"id": "a", "tag": "", "direction": "in", "at": "2026-04-08T07:58:00+09:00"},
        {"id": "a", "tag": "T", "direction": "up", "at": "2026-04-08T07:58:00+09:00"},
        {"id": "a", "tag": "T", "direction": "in", "at": "2026-04-08T07:58:00"},  # no offset
        {"id": "a", "tag": "T", "direction": "in", "at": "yesterday"},
        {"id": "a", "tag": "T", "direction": "in"},
    ],
)
def test_a_malformed_event_refuses_the_whole_batch(
    school: School, reader: GateReader, bad: dict[str, str]
) -> None:
    child(school, "T")
    good = event("ok", "T", timezone.now())
    with pytest.raises(passes.BatchRefused) as refused:
        passes.record(reader, [good, bad])
    assert refused.value.problems[0][0] == 1
    assert not GatePass.objects.exists()
    assert not OutgoingMail.objects.exists()


def test_a_batch_above_the_cap_is_refused(reader: GateReader) -> None:
    now = timezone.now()
    with pytest.raises(passes.BatchRefused, match="at most 1000"):
        passes.record(reader, [event(str(n), "T", now) for n in range(passes.MAX_EVENTS + 1)], now)


def test_a_batch_is_a_handful_of_queries(
    school: School, reader: GateReader, django_assert_max_num_queries: object
) -> None:
    for n in range(20):
        child(school, f"T{n}", [f"p{n}@docomo.ne.jp"])
    now = timezone.now()
    batch = [event(f"u{n}", f"U{n}", now) for n in range(50)] + [
        event(f"r{n}", f"T{n}", now - timedelta(hours=2)) for n in range(20)
    ]
    # Unknown and old passes: no mail, so the batch costs the same whatever its size.
    with django_assert_max_num_queries(10):  # type: ignore[operator]
        passes.record(reader, batch, now)
    assert GatePass.objects.count() == 70


def test_reader_register_and_revoke_are_audited_and_a_revoked_token_opens_nothing(school: School) -> None:
    staff = make_staff(Role.SCHOOL, school=school)
    reader, token = readers.register(school, "正門", "校舎東側", by=staff)
    assert token.startswith("mgr_")
    assert token not in reader.token_digest
    assert readers.authenticate(token) == reader
    assert readers.authenticate(token + "x") is None
    assert readers.authenticate("mmr_" + token[4:]) is None
    assert readers.revoke(reader, by=staff) is True
    assert readers.revoke(reader, by=staff) is False
    assert readers.authenticate(token) is None
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", "actor_name"))
    assert actions[-2:] == [
        ("gate_reader.registered", staff.username),
        ("gate_reader.revoked", staff.username),
    ]


def test_the_mail_says_the_local_time_whatever_offset_the_reader_sent(
    school: School, reader: GateReader, smtp_sink: Sink
) -> None:
    child(school, "T", ["mama@docomo.ne.jp"])
    now = timezone.now()
    utc = now.astimezone(UTC)
    passes.record(reader, [{"id": "z", "tag": "T", "direction": "in", "at": utc.isoformat()}], now)
    run_until_quiet()
    (message,) = smtp_sink.to("mama@docomo.ne.jp")
    local = timezone.localtime(now)
    assert f"{local.hour}:{local.minute:02d}" in str(message["Subject"])


@pytest.mark.django_db(transaction=True)
def test_racing_posts_of_the_same_backlog_mail_once() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no race to lose")
    school = make_school(make_municipality("race"), name="競争小学校", local="race-es")
    reader, _token = readers.register(school, "正門", by=None)
    for n in range(30):
        child(school, f"T{n}", [f"p{n}@docomo.ne.jp", f"q{n}@au.com"])
    now = timezone.now()
    batch = [event(f"e{n}", f"T{n}", now - timedelta(seconds=n)) for n in range(30)]
    results: list[passes.Result] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def post() -> None:
        try:
            start.wait()
            results.append(passes.record(GateReader.objects.get(pk=reader.pk), batch, now))
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.accepted for r in results) == 30
    assert sum(r.duplicates for r in results) == 3 * 30
    assert OutgoingMail.objects.filter(kind="gate_pass").count() == 60
    assert GateDayCount.objects.get().passes == 30

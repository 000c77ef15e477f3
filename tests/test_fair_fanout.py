"""Fair sharing across schools (issue 15): a city-wide broadcast's first chunk names every school.

Rosters are imported per school and their addresses are often grouped by school; in plain
address order the first chunks of a city-wide broadcast would all be one school's. The fan-out
writes a head first (chunk 0: each school's first addresses in turn), then the rest in address
order, each address once, resumable after a crash (broadcasts/fanout.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import delivery, fanout, sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, Recipient
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import fan_out_everything, run_until_quiet
from tests.test_broadcasts import _lose_queued_work, small_slices

pytestmark = pytest.mark.django_db


def city_of(schools: int, children: int) -> tuple[User, list[School], dict[str, School]]:
    """A city whose rosters sort by school, as imported rosters often do: s0-…, s1-…, …"""
    city = make_municipality()
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    made = [make_school(city) for _ in range(schools)]
    school_of = {}
    for number, school in enumerate(made):
        for n in range(children):
            address = f"s{number}-n{n}@docomo.ne.jp"
            make_registrant(school, [address], child_name=f"見守 {number}の{n}")
            school_of[address] = school
    return staff, made, school_of


def send_to_city(staff: User) -> Broadcast:
    broadcast = sending.compose(staff, subject="地震", body="安否を", scope=resolve_scope(staff), urgent=True)
    assert sending.send(broadcast)
    _lose_queued_work()  # each slice is run by hand below
    return broadcast


def chunk_emails(broadcast: Broadcast, chunk: int) -> list[str]:
    rows = Delivery.objects.filter(broadcast=broadcast, chunk=chunk)
    return sorted(rows.values_list("email", flat=True))


def test_the_first_chunk_holds_every_schools_first_addresses(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_slices(monkeypatch, 5)
    staff, schools, school_of = city_of(3, 4)
    broadcast = send_to_city(staff)

    assert fanout.fan_out(broadcast.pk) == 5
    # Each school's first, then the second of the first two (by address) to fill the chunk;
    # in address order they would have been s0-n0 … s0-n3 and s1-n0.
    assert chunk_emails(broadcast, 0) == [
        "s0-n0@docomo.ne.jp",
        "s0-n1@docomo.ne.jp",
        "s1-n0@docomo.ne.jp",
        "s1-n1@docomo.ne.jp",
        "s2-n0@docomo.ne.jp",
    ]
    head = Delivery.objects.filter(broadcast=broadcast, chunk=0)
    assert {row.school_id for row in head} == {school.pk for school in schools}
    assert all(row.school_id == school_of[row.email].pk for row in head)
    # The head's recipients, and nothing else yet.
    assert Recipient.objects.filter(broadcast=broadcast).count() == 5
    assert sending.progress(broadcast).messages == 5

    # The rest in address order, past the head: the slices skip what the head wrote.
    assert fanout.fan_out(broadcast.pk, 1) == 5
    assert chunk_emails(broadcast, 1) == [
        "s0-n2@docomo.ne.jp",
        "s0-n3@docomo.ne.jp",
        "s1-n2@docomo.ne.jp",
        "s1-n3@docomo.ne.jp",
        "s2-n1@docomo.ne.jp",
    ]
    fan_out_everything(broadcast)
    assert chunk_emails(broadcast, 2) == ["s2-n2@docomo.ne.jp", "s2-n3@docomo.ne.jp"]
    assert Recipient.objects.filter(broadcast=broadcast).count() == 12

    run_until_quiet()
    assert smtp_sink.copies() == dict.fromkeys(school_of, 1)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.message_count, broadcast.registrant_count) == (
        BroadcastStatus.SENT,
        12,
        12,
    )


def test_more_schools_than_a_chunk_holds_each_get_one_address_in_the_head(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_slices(monkeypatch, 2)
    staff, _schools, school_of = city_of(5, 2)
    broadcast = send_to_city(staff)

    assert fanout.fan_out(broadcast.pk) == 5  # one chunk, larger than CHUNK_SIZE
    assert chunk_emails(broadcast, 0) == [f"s{n}-n0@docomo.ne.jp" for n in range(5)]
    fan_out_everything(broadcast)
    assert [chunk_emails(broadcast, chunk) for chunk in (1, 2, 3)] == [
        ["s0-n1@docomo.ne.jp", "s1-n1@docomo.ne.jp"],
        ["s2-n1@docomo.ne.jp", "s3-n1@docomo.ne.jp"],
        ["s4-n1@docomo.ne.jp"],
    ]
    run_until_quiet()
    assert smtp_sink.copies() == dict.fromkeys(school_of, 1)


def test_a_fan_out_cut_after_the_head_resumes_and_writes_each_address_once(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_slices(monkeypatch, 3)
    staff, _schools, school_of = city_of(3, 3)
    broadcast = send_to_city(staff)
    real_insert = fanout._insert_deliveries

    def cut_on_the_third_slice(broadcast: Broadcast, **slice: Any) -> int:
        if slice["first_chunk"] == 2:
            raise RuntimeError("worker killed")
        return real_insert(broadcast, **slice)

    monkeypatch.setattr(fanout, "_insert_deliveries", cut_on_the_third_slice)
    assert fanout.fan_out(broadcast.pk) == 3
    assert fanout.fan_out(broadcast.pk, 1) == 3
    with pytest.raises(RuntimeError):
        fanout.fan_out(broadcast.pk, 2)
    assert Delivery.objects.filter(broadcast=broadcast).count() == 6  # the cut slice left nothing

    monkeypatch.setattr(fanout, "_insert_deliveries", real_insert)
    assert fanout.fan_out(broadcast.pk, 1) == 0  # a late twin of the second slice does nothing
    assert fanout.fan_out(broadcast.pk) == 3  # the sweep's re-run (wherever it is) carries on
    fan_out_everything(broadcast)
    emails = list(Delivery.objects.filter(broadcast=broadcast).values_list("email", flat=True))
    assert sorted(emails) == sorted(school_of)  # each address exactly once
    assert sorted(
        Recipient.objects.filter(broadcast=broadcast).values_list("delivery__email", flat=True)
    ) == sorted(school_of)
    run_until_quiet()
    assert smtp_sink.copies() == dict.fromkeys(school_of, 1)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.message_count, broadcast.registrant_count) == (
        BroadcastStatus.SENT,
        9,
        9,
    )


def test_siblings_at_two_schools_share_one_mail_from_the_head(
    smtp_sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    small_slices(monkeypatch, 2)
    city = make_municipality()
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    elementary, junior = make_school(city), make_school(city)
    # The family's address comes first at the junior high and last at the elementary school.
    make_registrant(elementary, ["a-elementary@au.com"], child_name="見守 一郎")
    make_registrant(elementary, ["z-family@au.com"], child_name="見守 花子")
    make_registrant(junior, ["Z-FAMILY@au.com", "b-junior@au.com"], child_name="見守 太郎")
    make_registrant(junior, ["c-junior@au.com"], child_name="見守 次郎")
    broadcast = send_to_city(staff)

    fan_out_everything(broadcast)
    rows = {row.email.lower(): row for row in Delivery.objects.filter(broadcast=broadcast)}
    assert sorted(rows) == ["a-elementary@au.com", "b-junior@au.com", "c-junior@au.com", "z-family@au.com"]
    # One mail for both children, sent by the lower-numbered school, as before the head.
    family = rows["z-family@au.com"]
    assert family.school_id == elementary.pk
    assert {r.registrant.child_name for r in Recipient.objects.filter(delivery=family)} == {
        "見守 花子",
        "見守 太郎",
    }
    assert chunk_emails(broadcast, 0) == ["a-elementary@au.com", "b-junior@au.com"]
    run_until_quiet()
    assert sorted(smtp_sink.copies().values()) == [1, 1, 1, 1]
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.message_count, broadcast.registrant_count) == (
        BroadcastStatus.SENT,
        4,
        4,
    )


def test_a_chunk_offers_its_schools_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a chunk too, each school's first mail comes before any school's second: a carrier
    group whose rate admits part of the chunk now shares that part among the schools."""
    small_slices(monkeypatch, 6)
    staff, _schools, _school_of = city_of(3, 3)
    broadcast = send_to_city(staff)
    fanout.fan_out(broadcast.pk)

    claimed = delivery._claim(broadcast.pk, 0, uuid.uuid4())
    order = [mail.email for mail in delivery._mails(broadcast.pk, claimed)]
    assert order == [
        "s0-n0@docomo.ne.jp",
        "s1-n0@docomo.ne.jp",
        "s2-n0@docomo.ne.jp",
        "s0-n1@docomo.ne.jp",
        "s1-n1@docomo.ne.jp",
        "s2-n1@docomo.ne.jp",
    ]

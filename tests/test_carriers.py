"""Carrier profiles (B3, B12; mail/carriers.py): each destination group has its own sessions,
mails per session and rate, shared by every worker; a group that defers or slows down pauses on
its own, and the other groups' mail goes on as if nothing happened.

Through the real paths: broadcasts composed and sent as staff do, tasks run by the embedded
worker's code, a real SMTP sink that defers or answers slowly for one domain.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import lanes, sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.mail import carriers
from mimamori.mail.models import CarrierLease, CarrierProfile, OutgoingMail, OutgoingStatus
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import School
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks, run_until_quiet

pytestmark = pytest.mark.django_db


def audience(school: School, **domains: int) -> list[str]:
    """``count`` registrants at each domain (``docomo_ne_jp=3``), one address each."""
    addresses = []
    for key, count in domains.items():
        domain = key.replace("_", ".")
        for number in range(count):
            address = f"guardian{number}@{domain}"
            make_registrant(school, [address])
            addresses.append(address)
    return addresses


def broadcast_to(school: School, subject: str = "不審者情報", urgent: bool = False) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject=subject,
        body="下校時に注意してください。",
        scope=resolve_scope(staff, school_ids=[school.pk]),
        urgent=urgent,
    )
    assert sending.send(broadcast)
    return broadcast


def profile(name: str) -> CarrierProfile:
    return CarrierProfile.objects.get(name=name)


def statuses(broadcast: Broadcast, domain: str) -> Counter[str]:
    return Counter(
        Delivery.objects.filter(broadcast=broadcast, email__endswith="@" + domain).values_list(
            "status", flat=True
        )
    )


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_each_address_finds_its_group() -> None:
    groups = carriers.current()
    assert groups.of("a@docomo.ne.jp").name == "docomo"
    assert groups.of("a@EZWEB.ne.jp").name == groups.of("b@au.com").name == "au"
    assert groups.of("a@i.softbank.jp").name == groups.of("b@softbank.ne.jp").name == "softbank"
    assert groups.of("a@mail.docomo.ne.jp").name == "docomo"  # a subdomain belongs to its group
    assert groups.of("a@notdocomo.ne.jp").name == "default"
    assert groups.of("a@example.jp").name == "default"


def test_sessions_are_shared_by_all_workers_and_a_quarter_is_kept_for_alerts() -> None:
    docomo = profile("docomo")
    docomo.sessions = 8
    docomo.save()
    first, second, alert = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    taken = carriers.acquire({docomo.pk: 8}, first)[docomo.pk]
    assert len(taken) == 6  # normal broadcasts: three quarters
    assert carriers.acquire({docomo.pk: 2}, second) == {}
    assert len(carriers.acquire({docomo.pk: 4}, alert, urgent=True)[docomo.pk]) == 2
    assert CarrierLease.objects.filter(profile=docomo, holder__isnull=False).count() == 8

    carriers.release(taken[:2])
    assert len(carriers.acquire({docomo.pk: 4}, second)[docomo.pk]) == 2
    # A dead worker's lease runs out, and is free again.
    CarrierLease.objects.filter(holder=first).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert len(carriers.acquire({docomo.pk: 8}, second)[docomo.pk]) == 4


def test_each_session_carries_one_group_and_at_most_its_mails(smtp_sink: Sink) -> None:
    school = make_school()
    addresses = audience(school, docomo_ne_jp=25, gmail_com=6, example_jp=4)
    docomo = profile("docomo")
    docomo.mails_per_session = 10
    docomo.save()

    broadcast = broadcast_to(school)
    run_until_quiet()

    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert smtp_sink.copies() == Counter(dict.fromkeys(addresses, 1))
    groups = carriers.current()
    for recipients in smtp_sink.by_session.values():
        assert len({groups.of(address).name for address in recipients}) == 1
        if groups.of(recipients[0]).name == "docomo":
            assert len(recipients) <= 10
    assert not CarrierLease.objects.filter(holder__isnull=False).exists()  # all given back


def test_a_deferring_destination_pauses_alone_and_gets_its_mail_once_it_recovers(
    smtp_sink: Sink, settings: Any
) -> None:
    settings.MIMAMORI_CARRIER_PAUSE_SECONDS = 60
    school = make_school()
    audience(school, docomo_ne_jp=12, gmail_com=8, example_jp=5)
    smtp_sink.domain_replies["docomo.ne.jp"] = "451 4.7.1 Service temporarily unavailable"

    broadcast = broadcast_to(school)
    run_until_quiet()

    # The others got everything; docomo was tried until it was clearly in trouble, then paused:
    # its mails wait for the pause's end without using up their attempts.
    assert statuses(broadcast, "gmail.com") == {DeliveryStatus.ACCEPTED: 8}
    assert statuses(broadcast, "example.jp") == {DeliveryStatus.ACCEPTED: 5}
    assert statuses(broadcast, "docomo.ne.jp") == {DeliveryStatus.DEFERRED: 12}
    docomo = profile("docomo")
    assert docomo.paused_until is not None
    assert docomo.paused_until > timezone.now() + timedelta(seconds=50)
    assert "451" in docomo.last_trouble
    assert not Delivery.objects.filter(broadcast=broadcast, attempts__gt=1).exists()
    tried = sum(count for address, count in smtp_sink.attempts.items() if address.endswith("@docomo.ne.jp"))

    # While it is paused, another broadcast's docomo mails are not even offered.
    second = broadcast_to(school, subject="下校時刻の変更")
    run_until_quiet()
    assert statuses(second, "docomo.ne.jp") == {DeliveryStatus.DEFERRED: 12}
    assert (
        sum(count for address, count in smtp_sink.attempts.items() if address.endswith("@docomo.ne.jp"))
        == tried
    )

    # docomo recovers and the pause ends: every mail is delivered, once.
    del smtp_sink.domain_replies["docomo.ne.jp"]
    CarrierProfile.objects.filter(pk=docomo.pk).update(paused_until=timezone.now())
    Delivery.objects.filter(status=DeliveryStatus.DEFERRED).update(next_attempt_at=timezone.now())
    for pending in (broadcast, second):
        for chunk in set(Delivery.objects.filter(broadcast=pending).values_list("chunk", flat=True)):
            lanes.queue_chunk(pending, chunk)
    run_until_quiet()
    for done in (broadcast, second):
        done.refresh_from_db()
        assert done.status == BroadcastStatus.SENT
    assert set(smtp_sink.copies().values()) == {2}  # each address: one mail of each broadcast
    docomo.refresh_from_db()
    assert (docomo.trouble, docomo.pauses) == (0, 0)


@pytest.mark.django_db(transaction=True)  # the slow group's senders record on their own connections
def test_a_slow_destination_never_holds_the_others(smtp_sink: Sink, settings: Any) -> None:
    if connection.vendor == "sqlite":
        # pytest-django's SQLite test database lives in memory with a shared cache, where a
        # second connection's write fails at once ("table is locked") instead of waiting its
        # turn as on the file database of embedded mode.
        pytest.skip("two connections writing at once: PostgreSQL's run covers it")
    settings.MIMAMORI_CARRIER_SLOW_SECONDS = 0.3
    settings.MIMAMORI_CARRIER_BUSY_SECONDS = 0
    school = make_school()
    addresses = audience(school, docomo_ne_jp=6, gmail_com=10, example_jp=10)
    smtp_sink.domain_delays["docomo.ne.jp"] = 3.0

    broadcast = broadcast_to(school)
    while run_queued_tasks():  # the fan-out, then the chunk
        pass

    # The chunk's task is over while docomo's first mails are still waiting for their replies:
    # the worker is free for other work, and everything else has been delivered.
    assert statuses(broadcast, "gmail.com") == {DeliveryStatus.ACCEPTED: 10}
    assert statuses(broadcast, "example.jp") == {DeliveryStatus.ACCEPTED: 10}
    assert statuses(broadcast, "docomo.ne.jp")[DeliveryStatus.SENDING] >= 1

    # Those senders finish on their own, record what the relay said and give their sessions back.
    wait_until(lambda: not statuses(broadcast, "docomo.ne.jp")[DeliveryStatus.SENDING])
    wait_until(lambda: not CarrierLease.objects.filter(holder__isnull=False).exists())
    assert statuses(broadcast, "docomo.ne.jp")[DeliveryStatus.ACCEPTED] >= 1

    # The destination is quick again: the rest goes, and nobody gets a mail twice.
    del smtp_sink.domain_delays["docomo.ne.jp"]
    CarrierProfile.objects.update(paused_until=None)
    Delivery.objects.filter(status=DeliveryStatus.DEFERRED).update(next_attempt_at=timezone.now())
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert smtp_sink.copies() == Counter(dict.fromkeys(addresses, 1))


def test_a_rate_limited_group_is_paced_across_tasks(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_CARRIER_HORIZON_SECONDS = 1
    settings.MIMAMORI_CARRIER_BUSY_SECONDS = 0
    gmail = profile("gmail")
    gmail.rate_per_minute = 600  # one mail every 0.1 s
    gmail.save()
    school = make_school()
    addresses = audience(school, gmail_com=15, example_jp=3)

    broadcast = broadcast_to(school)

    def sent() -> bool:
        run_until_quiet()
        broadcast.refresh_from_db()
        return broadcast.status == BroadcastStatus.SENT

    wait_until(sent)
    assert smtp_sink.copies() == Counter(dict.fromkeys(addresses, 1))
    # What would have started more than a second ahead was put back for a later task, not
    # waited for by this one.
    tasks = DBTaskResult.objects.filter(task_path="mimamori.broadcasts.tasks.deliver_chunk").count()
    assert tasks >= 2
    arrivals = sorted(
        at
        for at in Delivery.objects.filter(broadcast=broadcast, email__endswith="@gmail.com").values_list(
            "accepted_at", flat=True
        )
        if at is not None
    )
    # Fifteen mails at ten a second take 1.4 s at least, however the tasks fell (outcomes are
    # stamped by the batch, a fifth of a second at most).
    assert arrivals[-1] - arrivals[0] >= timedelta(seconds=1.0)


def test_other_mail_waits_for_a_paused_group_without_using_its_attempts(smtp_sink: Sink) -> None:
    registrant = make_registrant(make_school())
    CarrierProfile.objects.filter(name="docomo").update(
        paused_until=timezone.now() + timedelta(minutes=1), pauses=1
    )
    set_addresses(registrant, ["mama@docomo.ne.jp", "papa@gmail.com", "", ""])
    run_until_quiet()

    mails = {mail.to: mail for mail in OutgoingMail.objects.all()}
    assert smtp_sink.copies() == {"papa@gmail.com": 1}
    waiting = mails["mama@docomo.ne.jp"]
    assert (waiting.status, waiting.attempts) == (OutgoingStatus.DEFERRED, 0)
    assert waiting.next_attempt_at > timezone.now() + timedelta(seconds=50)

    # The pause ends: it goes, and the group's trouble is over with it.
    CarrierProfile.objects.filter(name="docomo").update(paused_until=timezone.now())
    OutgoingMail.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
    DBTaskResult.objects.update(run_after=timezone.now())
    run_until_quiet()
    assert smtp_sink.copies() == {"papa@gmail.com": 1, "mama@docomo.ne.jp": 1}
    assert profile("docomo").pauses == 0


def test_centre_staff_see_and_change_the_profiles_and_every_change_is_audited(client: Any) -> None:
    client.force_login(make_staff(Role.CENTRE))
    CarrierProfile.objects.filter(name="softbank").update(
        paused_until=timezone.now() + timedelta(minutes=5), last_trouble="451 4.7.1 try later"
    )
    page = client.get(reverse("console:carrier_profiles")).content.decode()
    assert "ドコモ" in page
    assert "docomo.ne.jp" in page
    assert "451 4.7.1 try later" in page  # why softbank is paused

    url = reverse("console:carrier_profile", args=["docomo"])
    form = {
        "label": "ドコモ",
        "domains": "docomo.ne.jp\nmopera.net",
        "sessions": 4,
        "mails_per_session": 50,
        "rate_per_minute": 1200,
        "charset": "iso-2022-jp",
    }
    assert client.post(url, form).status_code == 302
    docomo = profile("docomo")
    assert (docomo.domains, docomo.sessions, docomo.mails_per_session) == (
        ["docomo.ne.jp", "mopera.net"],
        4,
        50,
    )
    assert carriers.current().of("x@mopera.net").name == "docomo"
    event = AuditEvent.objects.get(action="carrier.changed")
    assert event.target == "carrier docomo"
    assert event.details["changes"]["sessions"] == [12, 4]

    # A domain another group lists, or a bad one, is refused with the reason, and nothing changes.
    refused = client.post(url, {**form, "domains": "gmail.com\nnot a domain", "sessions": 9})
    assert refused.status_code == 400
    body = refused.content.decode()
    assert "not a domain" in body
    assert profile("docomo").sessions == 4

    # A pause ended by hand.
    assert client.post(reverse("console:carrier_resume", args=["softbank"])).status_code == 302
    assert profile("softbank").paused_until is None
    assert AuditEvent.objects.filter(action="carrier.resumed", target="carrier softbank").exists()


def test_a_greylisted_address_here_and_there_does_not_pause_its_group(smtp_sink: Sink) -> None:
    school = make_school()
    addresses = audience(school, docomo_ne_jp=40)
    for address in addresses[::4]:
        smtp_sink.refusals[address] = ["451 4.7.1 Greylisted, try again later"]

    broadcast = broadcast_to(school)
    run_until_quiet()

    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    assert smtp_sink.copies() == Counter(dict.fromkeys(addresses, 1))
    assert profile("docomo").paused_until is None  # never paused: mails went through between them

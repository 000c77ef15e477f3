"""The demo's data (`mimamori run --demo`: registry/demo.py, and the past written by
receipts/demo.py and gates/demo.py): classes of a real size, siblings, and a past whose every
counter equals a recount and whose every time comes after the one it follows."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, identify_hasher
from django.db.models import Max, Min
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, BroadcastStatus, Delivery, Recipient
from mimamori.broadcasts.targeting import suppressed_count
from mimamori.gates.models import GateDayCount, GatePass, GateReader, PassOutcome
from mimamori.gates.preferences import gate_addresses
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.portal.history import entries_for
from mimamori.receipts import statistics
from mimamori.receipts.models import Receipt, Reminder
from mimamori.registry import demo
from mimamori.registry.models import Address, AddressFailure, AddressStatus, Registrant, School

pytestmark = pytest.mark.django_db


@pytest.fixture
def loaded() -> demo.DemoSummary:
    return demo.load_demo()


def test_classes_hold_25_to_35_children_and_some_are_siblings(loaded: demo.DemoSummary) -> None:
    sizes = Counter(Registrant.objects.values_list("school_id", "grade", "class_name"))
    assert set(sizes.values()) <= set(range(25, 36))
    for school in School.objects.all():
        assert {grade for s, grade, _c in sizes if s == school.pk} == {1, 2, 3, 4, 5, 6}, school.name
    assert set(Counter(Address.objects.values_list("registrant_id", flat=True)).values()) == {1, 2, 3, 4}
    # Siblings: two children of one school in different classes, whose guardian registered
    # the same addresses for both (one mail names both).
    families: dict[tuple[int, tuple[str, ...]], list[Registrant]] = defaultdict(list)
    for registrant in Registrant.objects.prefetch_related("addresses"):
        emails = tuple(sorted(a.email.lower() for a in registrant.addresses.all()))
        if emails:
            families[registrant.school_id, emails].append(registrant)
    siblings = [children for children in families.values() if len(children) > 1]
    assert len(siblings) > 50
    for children in siblings:
        assert len({(c.grade, c.class_name) for c in children}) == len(children)
        assert len({c.child_name.split()[0] for c in children}) == 1  # one family name
    # No two families share an address by chance.
    holders = Counter((school, email) for (school, emails), children in families.items() for email in emails)
    assert max(holders.values()) == 1

    # Loaded once: a second run finds it and writes nothing, the past included.
    models = (Registrant, Address, Broadcast, Delivery, Receipt, AuditEvent, GatePass, OutgoingMail, User)
    counts = [model.objects.count() for model in models]
    again = demo.load_demo()
    assert not again.created
    assert [model.objects.count() for model in models] == counts
    assert again.registrants == loaded.registrants == Registrant.objects.count()


def test_every_counter_of_the_past_broadcasts_equals_a_recount_and_times_follow(
    loaded: demo.DemoSummary,
) -> None:
    broadcasts = list(Broadcast.objects.order_by("pk"))
    assert [b.subject[:6] for b in broadcasts] == ["【休校】本日", "【訓練】【安", "【不審者情報"]
    for broadcast in broadcasts:
        recipients = list(
            Recipient.objects.filter(broadcast=broadcast).values_list("registrant_id", "group_id")
        )
        group_of = dict(recipients)
        assert len(group_of) == len(set(recipients))  # each registrant in one class row
        registrants = Counter(group_of.values())
        receipts = list(Receipt.objects.filter(broadcast=broadcast).values_list("registrant_id", "answer"))
        confirmed = Counter(group_of[registrant] for registrant, _answer in receipts)
        answered = Counter(
            (group_of[registrant], answer) for registrant, answer in receipts if answer is not None
        )
        groups = list(AudienceGroup.objects.filter(broadcast=broadcast))
        assert {g.pk: g.registrants for g in groups} == {g.pk: registrants[g.pk] for g in groups}
        assert {g.pk: g.confirmed for g in groups} == {g.pk: confirmed[g.pk] for g in groups}
        for group in groups:
            assert group.answer_counts() == {a: n for (g, a), n in answered.items() if g == group.pk}
        assert broadcast.registrant_count == len(group_of) == sum(g.registrants for g in groups)
        assert broadcast.message_count == Delivery.objects.filter(broadcast=broadcast).count()
        assert broadcast.suppressed_count == suppressed_count(broadcast) == 0
        assert broadcast.status == BroadcastStatus.SENT
        progress = sending.progress(broadcast)
        assert progress.pending == 0
        assert progress.sent + progress.failed == progress.messages == broadcast.message_count
        # Each receipt came through a mail that names its child.
        named = set(Recipient.objects.filter(broadcast=broadcast).values_list("delivery_id", "registrant_id"))
        for delivery_id, registrant_id in Receipt.objects.filter(broadcast=broadcast).values_list(
            "delivery_id", "registrant_id"
        ):
            assert (delivery_id, registrant_id) in named
        reminders = list(Reminder.objects.filter(broadcast=broadcast))
        assert broadcast.reminders_sent == len(reminders)
        for reminder in reminders:
            resent = Delivery.objects.filter(broadcast=broadcast, round=reminder.number).count()
            assert reminder.messages == resent > 0
        # What the statistics page reads adds up to the same.
        stats = statistics.statistics(broadcast, School.objects.all())
        assert (stats.registrants, stats.confirmed) == (len(group_of), len(receipts))
        assert 0 < stats.confirmed < stats.registrants  # some confirmed, some not yet
        assert statistics.timeline(broadcast, School.objects.all()).points[-1].confirmed == len(receipts)
    drill = broadcasts[1]
    assert drill.answers == ["無事です", "けがをしています", "支援が必要です"]
    tally = statistics.answer_counts(drill)
    assert tally["無事です"] > tally["けがをしています"] > 0
    assert Receipt.objects.filter(broadcast=drill, replaced__isnull=False).exists()  # answers changed
    _happened_in_order()


def _happened_in_order() -> None:
    now = timezone.now()
    for broadcast in Broadcast.objects.all():
        sent = broadcast.send_requested_at
        assert sent is not None
        assert broadcast.fanned_out_at is not None
        assert broadcast.created_at < sent <= broadcast.fanned_out_at < now
        accepted = Delivery.objects.filter(broadcast=broadcast).aggregate(
            first=Min("accepted_at"), last=Max("accepted_at")
        )
        assert accepted["first"] is not None
        assert broadcast.fanned_out_at < accepted["first"]
        assert accepted["last"] == broadcast.finished_at
        assert accepted["last"] < now
        assert not Delivery.objects.filter(broadcast=broadcast, accepted_at__isnull=True).exists()
        # Every child it reached was registered when it was sent.
        assert not Registrant.objects.filter(
            pk__in=Recipient.objects.filter(broadcast=broadcast).values("registrant_id"), created_at__gte=sent
        ).exists()
        for receipt in Receipt.objects.filter(broadcast=broadcast).select_related("delivery"):
            assert receipt.delivery.status == "accepted"
            assert receipt.delivery.accepted_at is not None
            assert receipt.delivery.accepted_at < receipt.confirmed_at < now
            if receipt.answer is not None:
                assert receipt.answered_at is not None
                assert receipt.confirmed_at <= receipt.answered_at
                closed = broadcast.answers_closed_at
                assert closed is None or receipt.answered_at < closed
        for reminder in Reminder.objects.filter(broadcast=broadcast):
            assert sent < reminder.sent_at < now
        events = AuditEvent.objects.filter(target=f"broadcast {broadcast.pk}")
        assert events.get(action="broadcast.sent").at == sent
        assert all(sent <= event.at < now for event in events)
    bounced = Delivery.objects.filter(status="failed")
    assert bounced.exists()
    assert all(d.reply.startswith("bounce: ") for d in bounced)
    # A bounce counts against its address (registry/health.py), which is still mailed.
    for failure in AddressFailure.objects.all():
        assert failure.source == "bounce"
        assert failure.at < now
        statuses = set(Address.objects.filter(email__iexact=failure.email).values_list("status", flat=True))
        assert statuses == {AddressStatus.BOUNCING}
    assert not Address.objects.filter(status=AddressStatus.SUPPRESSED).exists()
    assert Delivery.objects.filter(attempts=2, status="accepted").exists()  # deferred once
    assert not AuditEvent.objects.filter(at__gte=now).exists()
    # Staff logged in before they acted, and Django noted the last time.
    for user in User.objects.exclude(role=""):
        logins = AuditEvent.objects.filter(action="login.succeeded", actor=user).aggregate(
            first=Min("at"), last=Max("at")
        )
        assert user.last_login == logins["last"]  # None: never (the centre's)
        assert logins["first"] is None or user.date_joined < logins["first"]
    assert not User.objects.filter(date_joined__gte=now).exists()


def test_the_gate_counters_and_mails_equal_a_recount(loaded: demo.DemoSummary) -> None:
    now = timezone.now()
    passes = list(GatePass.objects.select_related("reader").order_by("at", "pk"))
    assert passes
    outcomes = Counter(p.outcome for p in passes)
    assert outcomes[PassOutcome.MAILED] > 100
    assert outcomes[PassOutcome.UNKNOWN] > 0
    counted: Counter[tuple[object, str]] = Counter()
    mailed: Counter[tuple[object, str]] = Counter()
    repeat = timedelta(seconds=settings.MIMAMORI_GATE_REPEAT_SECONDS)
    for n, gate_pass in enumerate(passes):
        assert gate_pass.at <= gate_pass.recorded_at < now
        key = (timezone.localdate(gate_pass.at), gate_pass.direction)
        if gate_pass.outcome != PassOutcome.REPEAT:
            counted[key] += 1
        mailed[key] += gate_pass.mails
        mails = OutgoingMail.objects.filter(kind="gate_pass", target=f"gate pass {gate_pass.pk}")
        assert mails.count() == gate_pass.mails
        if gate_pass.outcome == PassOutcome.MAILED:
            assert gate_pass.registrant_id is not None
            expected = gate_addresses([gate_pass.registrant_id])[gate_pass.registrant_id]
            assert sorted(mails.values_list("to", flat=True)) == sorted(expected)
            for mail in mails:
                assert mail.status == OutgoingStatus.SENT
                assert mail.sent_at is not None
                assert gate_pass.at <= mail.created_at < mail.sent_at < now
        elif gate_pass.outcome == PassOutcome.NO_ADDRESS:
            assert not gate_addresses([gate_pass.registrant_id or 0])
        elif gate_pass.outcome == PassOutcome.UNKNOWN:
            assert gate_pass.registrant_id is None
        elif gate_pass.outcome == PassOutcome.REPEAT:
            assert any(
                p.registrant_id == gate_pass.registrant_id
                and p.direction == gate_pass.direction
                and timedelta(0) <= gate_pass.at - p.at <= repeat
                for p in passes[:n]
            )
    rows = {(row.day, row.direction): (row.passes, row.mails) for row in GateDayCount.objects.all()}
    assert rows == {key: (counted[key], mailed[key]) for key in counted}
    for reader in GateReader.objects.all():
        last = GatePass.objects.filter(reader=reader).aggregate(last=Max("recorded_at"))["last"]
        assert reader.last_posted_at == last
    # Nothing is waiting to be mailed when the demo starts.
    assert not OutgoingMail.objects.exclude(status=OutgoingStatus.SENT).exists()


def test_the_guardian_and_staff_read_the_past(loaded: demo.DemoSummary) -> None:
    guardian = Registrant.objects.get(account__username=demo.GUARDIAN_LOGIN_ID)
    broadcasts = list(Broadcast.objects.order_by("-send_requested_at"))
    suspicious, drill, closed = entries_for(guardian, broadcasts)
    assert "不審者" in suspicious.broadcast.subject
    assert not suspicious.confirmed
    assert suspicious.confirm_token  # still to confirm, by its link
    assert drill.answer == "無事です"
    assert not drill.confirm_token  # answering closed
    assert closed.confirmed
    assert not closed.confirm_token
    client = Client()
    client.force_login(guardian.account)
    page = client.get(reverse("portal:history")).content.decode()
    for broadcast in broadcasts:
        assert broadcast.subject in page
    # 登下校の記録: the child passed the gate on the demo's school day, and the family was mailed.
    passes = GatePass.objects.filter(registrant=guardian, outcome=PassOutcome.MAILED)
    assert passes.exists()
    assert 'data-direction="in"' in client.get(reverse("portal:passes")).content.decode()

    staff = Client()
    staff.force_login(User.objects.get(username="midori"))
    page = staff.get(reverse("console:broadcast_receipts", args=[broadcasts[0].pk])).content.decode()
    assert "<polyline" in page
    assert page.count('<tr class="class"') == 18  # 緑小学校: three classes in each grade
    city = Client()
    city.force_login(User.objects.get(username="iwamizawa"))
    log = city.get(reverse("console:audit")).content.decode()
    for label in ("一斉配信の送信", "リマインドの送信", "回答の締め切り", "読み取り機の登録"):
        assert label in log, label
    actions = Counter(AuditEvent.objects.values_list("action", flat=True))
    assert actions["broadcast.sent"] == 3
    assert actions["reminder.sent"] == actions["broadcast.answers_closed"] == 1
    assert actions["gate_reader.registered"] == 2


@pytest.mark.real_hashing
def test_the_kept_demo_password_hash_is_the_production_hash() -> None:
    assert check_password(demo.DEMO_PASSWORD, demo.DEMO_PASSWORD_HASH)
    assert not identify_hasher(demo.DEMO_PASSWORD_HASH).must_update(demo.DEMO_PASSWORD_HASH)

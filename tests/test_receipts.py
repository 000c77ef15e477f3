"""Read confirmation core (S5): tokens in mails, the first confirmation counts, siblings, expiry."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.confirming import LinkExpired, Outcome, find_delivery, record_confirmation
from mimamori.receipts.models import Receipt
from mimamori.registry.models import School
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://\S+/c/([0-9a-f]+)/")


def send_with_confirmation(school: School) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="注意してください。",
        scope=resolve_scope(staff),
        request_confirmation=True,
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    return broadcast


def token_in_mail(sink: Sink, address: str) -> str:
    body = sink.to(address)[0].get_body()
    assert body is not None
    match = LINK.search(body.get_content())
    assert match, "the mail carries a confirmation link"
    return match.group(1)


def test_each_mail_carries_its_own_unguessable_link(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp"])
    send_with_confirmation(school)
    first, second = token_in_mail(smtp_sink, "one@docomo.ne.jp"), token_in_mail(smtp_sink, "two@ezweb.ne.jp")
    assert first != second
    assert len(first) >= 32  # ≥ 128 bits of hex
    tokens = [d.confirmation_token or "" for d in Delivery.objects.all()]
    assert len(set(tokens)) == len(tokens) == 2
    assert all(len(t) >= 60 for t in tokens)  # random hex from the database's CSPRNG, no IDs inside


def test_no_link_when_confirmation_is_not_requested(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    sending.send(sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff)))
    while run_queued_tasks():
        pass
    body = smtp_sink.to("one@docomo.ne.jp")[0].get_body()
    assert body is not None
    assert "/c/" not in body.get_content()
    assert Delivery.objects.get().confirmation_token is None


def test_the_first_confirmation_counts_and_slot_2_later_changes_nothing(smtp_sink: Sink) -> None:
    school = make_school()
    registrant = make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp"])
    broadcast = send_with_confirmation(school)
    slot1 = find_delivery(token_in_mail(smtp_sink, "one@docomo.ne.jp"))
    slot2 = find_delivery(token_in_mail(smtp_sink, "two@ezweb.ne.jp"))
    assert slot1 is not None
    assert slot2 is not None
    assert record_confirmation(slot1) is Outcome.CONFIRMED
    first = Receipt.objects.get(broadcast=broadcast, registrant=registrant)
    assert record_confirmation(slot2) is Outcome.ALREADY
    assert record_confirmation(slot1) is Outcome.ALREADY
    assert list(Receipt.objects.filter(broadcast=broadcast)) == [first]
    assert AudienceGroup.objects.get(broadcast=broadcast).confirmed == 1


def test_a_shared_sibling_address_confirms_each_child(smtp_sink: Sink) -> None:
    school = make_school()
    older = make_registrant(school, ["family@au.com"], grade=5)
    younger = make_registrant(school, ["FAMILY@au.com", "own@docomo.ne.jp"], grade=2)
    broadcast = send_with_confirmation(school)
    shared = Delivery.objects.get(broadcast=broadcast, email__iexact="family@au.com")
    assert record_confirmation(shared) is Outcome.CONFIRMED
    assert set(Receipt.objects.values_list("registrant", flat=True)) == {older.pk, younger.pk}
    assert sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True)) == 2
    own = Delivery.objects.get(broadcast=broadcast, email="own@docomo.ne.jp")
    assert record_confirmation(own) is Outcome.ALREADY


def test_unknown_tampered_and_expired_tokens(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    broadcast = send_with_confirmation(school)
    token = token_in_mail(smtp_sink, "one@docomo.ne.jp")
    assert find_delivery(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert find_delivery("x" * 60) is None
    assert find_delivery("../../etc/passwd") is None
    delivery = find_delivery(token)
    assert delivery is not None
    Broadcast.objects.filter(pk=broadcast.pk).update(
        send_requested_at=timezone.now() - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS, seconds=1)
    )
    expired = find_delivery(token)
    assert expired is not None
    with pytest.raises(LinkExpired):
        record_confirmation(expired)
    assert not Receipt.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_prepared_confirmation_survives_a_session_that_lost_it(smtp_sink: Sink) -> None:
    """PostgreSQL plans the confirmation once per connection; behind a pooler that hands the
    connection's statements to another server session, the statement is not there."""
    from django.db import connection

    from mimamori.receipts.confirming import confirm_link

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    make_registrant(school, ["two@ezweb.ne.jp"])
    send_with_confirmation(school)
    first, second = token_in_mail(smtp_sink, "one@docomo.ne.jp"), token_in_mail(smtp_sink, "two@ezweb.ne.jp")

    assert confirm_link(first) is Outcome.CONFIRMED
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE mimamori_confirm")  # as another server session would lack it
    assert confirm_link(second) is Outcome.CONFIRMED
    assert confirm_link(second) is Outcome.ALREADY
    assert confirm_link("f" * 60) is None
    assert Receipt.objects.count() == 2
    assert sum(AudienceGroup.objects.values_list("confirmed", flat=True)) == 2

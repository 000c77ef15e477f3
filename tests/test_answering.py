"""Answers (B1): recording a choice per child, changing it, and the counters the tally reads."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.answering import AnsweringClosed, Outcome, close_answers, record_answers
from mimamori.receipts.models import Receipt
from mimamori.registry.answers import SAFETY
from mimamori.registry.models import School
from tests.cast import make_registrant, make_school, make_staff
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db


def send_asking(school: School, answers: list[str] = SAFETY) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="安否確認",
        body="ご家族の安否をお知らせください。",
        scope=resolve_scope(staff),
        answers=answers,
    )
    assert broadcast.request_confirmation  # answering is confirming
    sending.send(broadcast)
    run_until_quiet()
    return broadcast


def counts(broadcast: Broadcast) -> dict[tuple[int, str, int], int]:
    return {
        (group.grade, group.class_name, answer): count
        for group in AudienceGroup.objects.filter(broadcast=broadcast)
        for answer, count in group.answer_counts().items()
    }


def test_siblings_answer_each_then_change_and_the_counters_follow(smtp_sink: object) -> None:
    school = make_school()
    elder = make_registrant(school, ["family@docomo.ne.jp"], grade=5, class_name="2")
    younger = make_registrant(school, ["family@docomo.ne.jp"], grade=2, class_name="1")
    broadcast = send_asking(school)
    token = Delivery.objects.get(broadcast=broadcast).confirmation_token or ""

    answered = record_answers(token, {elder.pk: 0, younger.pk: 2})
    assert answered is not None
    assert answered.outcome is Outcome.RECORDED
    assert counts(broadcast) == {(5, "2", 0): 1, (2, "1", 2): 1}
    assert sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True)) == 2

    again = record_answers(token, {elder.pk: 0, younger.pk: 1})  # the younger one's answer changes
    assert again is not None
    assert again.outcome is Outcome.RECORDED
    assert counts(broadcast) == {(5, "2", 0): 1, (2, "1", 1): 1}
    assert Receipt.objects.get(registrant=younger).answer == 1
    assert sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True)) == 2

    same = record_answers(token, {elder.pk: 0})
    assert same is not None
    assert same.outcome is Outcome.UNCHANGED

    with pytest.raises(ValueError, match="out of range"):
        record_answers(token, {elder.pk: 3})
    assert close_answers(broadcast)
    with pytest.raises(AnsweringClosed):
        record_answers(token, {elder.pk: 1})
    assert Receipt.objects.get(registrant=elder).answer == 0


def test_choices_are_checked_when_composing() -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    for wrong in (["無事です"], ["a", "a"], ["a", ""], [str(n) for n in range(7)], ["a", "b\nc"]):
        with pytest.raises(ValidationError):
            sending.compose(staff, subject="s", body="b", scope=resolve_scope(staff), answers=wrong)


def test_a_mail_that_names_a_child_answered_elsewhere_and_a_new_one(smtp_sink: object) -> None:
    """The first answers of a mail go in at once; a child its own mail answered already, with
    the same choice or another, is kept or changed, and each counter moves once."""
    school = make_school()
    elder = make_registrant(school, ["family@docomo.ne.jp", "elder@au.com"], grade=5, class_name="2")
    younger = make_registrant(school, ["family@docomo.ne.jp"], grade=2, class_name="1")
    broadcast = send_asking(school)
    shared = Delivery.objects.get(broadcast=broadcast, email="family@docomo.ne.jp").confirmation_token
    own = Delivery.objects.get(broadcast=broadcast, email="elder@au.com").confirmation_token

    first = record_answers(own or "", {elder.pk: 0})
    assert first is not None
    assert (first.outcome, first.named) == (Outcome.RECORDED, 1)
    kept = record_answers(shared or "", {elder.pk: 0, younger.pk: 2})  # elder's answer again
    assert kept is not None
    assert (kept.outcome, kept.named) == (Outcome.RECORDED, 2)
    assert counts(broadcast) == {(5, "2", 0): 1, (2, "1", 2): 1}

    same = record_answers(own or "", {elder.pk: 0})
    assert same is not None
    assert (same.outcome, same.named) == (Outcome.UNCHANGED, 1)
    changed = record_answers(shared or "", {elder.pk: 1, younger.pk: 2})
    assert changed is not None
    assert changed.outcome is Outcome.RECORDED
    assert counts(broadcast) == {(5, "2", 1): 1, (2, "1", 2): 1}
    assert sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True)) == 2
    assert Receipt.objects.filter(broadcast=broadcast).count() == 2

    with pytest.raises(ValueError, match="out of range"):  # one choice out of range: nothing at all
        record_answers(shared or "", {elder.pk: 2, younger.pk: 7})
    assert counts(broadcast) == {(5, "2", 1): 1, (2, "1", 2): 1}


def test_a_mail_naming_one_child_from_either_address(smtp_sink: object) -> None:
    """The usual mail names one child (on PostgreSQL it has a statement of its own): the other
    address's same answer is kept, a different one replaces it, a child the mail does not name
    is left alone, and each counter moves once."""
    school = make_school()
    child = make_registrant(school, ["mother@docomo.ne.jp", "father@au.com"], grade=4, class_name="3")
    other = make_registrant(school, ["other@softbank.ne.jp"], grade=4, class_name="3")
    broadcast = send_asking(school)
    mother = Delivery.objects.get(broadcast=broadcast, email="mother@docomo.ne.jp").confirmation_token or ""
    father = Delivery.objects.get(broadcast=broadcast, email="father@au.com").confirmation_token or ""

    first = record_answers(mother, {child.pk: 2})
    assert first is not None
    assert (first.outcome, first.named) == (Outcome.RECORDED, 1)
    again = record_answers(father, {child.pk: 2})
    assert again is not None
    assert (again.outcome, again.named) == (Outcome.UNCHANGED, 1)
    assert counts(broadcast) == {(4, "3", 2): 1}

    changed = record_answers(father, {child.pk: 0})
    assert changed is not None
    assert (changed.outcome, changed.named) == (Outcome.RECORDED, 1)
    stranger = record_answers(father, {other.pk: 1})
    assert stranger is not None
    assert stranger.named == 0
    assert counts(broadcast) == {(4, "3", 0): 1}
    assert sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True)) == 1
    assert list(Receipt.objects.filter(broadcast=broadcast).values_list("registrant_id", "answer")) == [
        (child.pk, 0)
    ]

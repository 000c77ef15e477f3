"""Receipts migration 0005 moves the answer counters from AnswerCount rows onto the class rows
(AudienceGroup.answer_0 … answer_5), and back when unapplied."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mimamori.broadcasts.models import AudienceGroup
from mimamori.registry.answers import SAFETY
from tests.cast import make_registrant, make_school
from tests.test_answering import send_asking

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("receipts", "0004_record_answers_function")]
AFTER = [("receipts", "0005_answer_counts_on_the_class_row")]


def migrate(target: list[tuple[str, str]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor


def test_the_counts_move_to_the_class_rows_and_back(smtp_sink: object) -> None:
    school = make_school()
    make_registrant(school, ["a@docomo.ne.jp"], grade=1, class_name="1")
    make_registrant(school, ["b@docomo.ne.jp"], grade=2, class_name="1")
    broadcast = send_asking(school, SAFETY)
    first, second = AudienceGroup.objects.filter(broadcast=broadcast).order_by("grade")
    try:
        old = migrate(BEFORE).loader.project_state(BEFORE[0]).apps
        counter = old.get_model("receipts", "AnswerCount")
        counter.objects.bulk_create(
            [
                counter(group_id=first.pk, answer=0, registrants=3),
                counter(group_id=first.pk, answer=2, registrants=1),
                counter(group_id=second.pk, answer=1, registrants=0),  # moved away again
            ]
        )
        migrate(AFTER)
        first.refresh_from_db()
        second.refresh_from_db()
        assert first.answer_counts() == {0: 3, 2: 1}
        assert second.answer_counts() == {}

        old = migrate(BEFORE).loader.project_state(BEFORE[0]).apps
        counter = old.get_model("receipts", "AnswerCount")
        assert sorted(counter.objects.values_list("group_id", "answer", "registrants")) == [
            (first.pk, 0, 3),
            (first.pk, 2, 1),
        ]
        counter.objects.filter(group_id=first.pk, answer=2).delete()  # answered under 0004
        migrate(AFTER)
        first.refresh_from_db()
        assert first.answer_counts() == {0: 3}
    finally:
        migrate(AFTER)

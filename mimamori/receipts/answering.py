"""Recording answers (B1): the verb behind a 安否確認 page's 「回答する」 button.

A broadcast with answer choices asks, for each child a mail names, which choice applies; the
guardian's POST names a choice per child. Answering is confirming: the first answer for a child
writes its Receipt (and counts it confirmed, as a bare confirmation would), a later one replaces
the answer until answering closes (staff close it, or the links expire). The tally reads
AnswerCount counters per audience group, which move with each answer: the group rows are locked
first, so two guardians answering for children of one class take turns and the counters stay
exact whatever the order.

On PostgreSQL all of that is one function call, mimamori_record_answers (receipts migration
0004): one round trip an answer, as the confirmation storm's one statement, so that an answer
storm goes at least as fast (docs/performance.md). It serialises per audience group too, in the
same id order, but with transaction-level advisory locks rather than the group rows' FOR UPDATE
(which would write the row once more), and moves the same counters; SQLite, which has no stored
functions and whose writers take turns anyway, runs the ORM path below.
"""

from __future__ import annotations

import enum
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Recipient
from mimamori.receipts.confirming import find_link, is_expired
from mimamori.receipts.models import AnswerCount, Receipt


class Outcome(enum.Enum):
    RECORDED = "recorded"  # at least one child's answer is new or changed
    UNCHANGED = "unchanged"  # every answer was already the one given


class AnsweringClosed(Exception):
    """Staff closed answering for this broadcast."""


@dataclass(frozen=True)
class Answered:
    outcome: Outcome
    answers: dict[int, int]  # registrant id → the answer now recorded, for the children of the mail


def record_answers(token: str, chosen: dict[int, int]) -> Answered | None:
    """Record ``chosen`` (registrant id → index into the broadcast's answers) for the mail the
    token belongs to; durable on return. Children the mail does not name are ignored. None when
    the token is unknown, its link has expired or its broadcast asks no answer.

    Raises AnsweringClosed once staff closed answering, ValueError for an index out of range.
    """
    if connection.vendor == "postgresql":
        return _record_in_one_call(token, chosen)
    link = find_link(token)
    if link is None or is_expired(link):
        return None
    broadcast = Broadcast.objects.only("answers", "answers_closed_at").get(pk=link.broadcast_id)
    if not broadcast.answers:
        return None
    if broadcast.answers_closed_at is not None:
        raise AnsweringClosed
    if any(not 0 <= answer < len(broadcast.answers) for answer in chosen.values()):
        raise ValueError("answer out of range")
    now = timezone.now()
    with transaction.atomic():
        groups = dict(
            Recipient.objects.filter(
                delivery_id=link.delivery_id, registrant_id__in=list(chosen)
            ).values_list("registrant_id", "group_id")
        )
        # The lock that keeps the counters exact (see the module's docstring).
        list(AudienceGroup.objects.select_for_update().filter(pk__in=set(groups.values())).order_by("pk"))
        before = dict(
            Receipt.objects.filter(
                broadcast_id=link.broadcast_id, registrant_id__in=list(groups)
            ).values_list("registrant_id", "answer")
        )
        confirmed: Counter[int] = Counter()
        moves: Counter[tuple[int, int]] = Counter()
        new, changed = [], []
        for registrant_id, group_id in groups.items():
            answer = chosen[registrant_id]
            if registrant_id not in before:
                new.append(
                    Receipt(
                        broadcast_id=link.broadcast_id,
                        registrant_id=registrant_id,
                        delivery_id=link.delivery_id,
                        confirmed_at=now,
                        answer=answer,
                        answered_at=now,
                    )
                )
                confirmed[group_id] += 1
            elif before[registrant_id] != answer:
                changed.append(registrant_id)
                if (old := before[registrant_id]) is not None:
                    moves[group_id, old] -= 1
            else:
                continue
            moves[group_id, answer] += 1
        Receipt.objects.bulk_create(new)
        for registrant_id in changed:
            Receipt.objects.filter(broadcast_id=link.broadcast_id, registrant_id=registrant_id).update(
                answer=chosen[registrant_id], answered_at=now
            )
        for group_id, count in confirmed.items():
            AudienceGroup.objects.filter(pk=group_id).update(confirmed=F("confirmed") + count)
        for (group_id, answer), delta in moves.items():
            if delta and not AnswerCount.objects.filter(group_id=group_id, answer=answer).update(
                registrants=F("registrants") + delta
            ):
                AnswerCount.objects.create(group_id=group_id, answer=answer, registrants=delta)
    outcome = Outcome.RECORDED if new or changed else Outcome.UNCHANGED
    return Answered(outcome, {registrant_id: chosen[registrant_id] for registrant_id in groups})


def _record_in_one_call(token: str, chosen: dict[int, int]) -> Answered | None:
    now = timezone.now()
    oldest = now - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT mimamori_record_answers(%s, %s, %s, %s::bigint[], %s::integer[])",
            # Array literals as text: cheaper than adapting Python lists, and only digits.
            [token, oldest, now, _array(chosen), _array(chosen.values())],
        )
        (result,) = cursor.fetchone()
    if isinstance(result, str):  # Django leaves jsonb undecoded for its JSONField
        result = json.loads(result)
    state = result["state"]
    if state == "unknown":
        return None
    if state == "closed":
        raise AnsweringClosed
    if state == "range":
        raise ValueError("answer out of range")
    outcome = Outcome.RECORDED if result["changed"] else Outcome.UNCHANGED
    return Answered(outcome, {int(registrant): answer for registrant, answer in result["answers"].items()})


def _array(numbers: Iterable[int]) -> str:
    return "{" + ",".join(str(int(number)) for number in numbers) + "}"


def close_answers(broadcast: Broadcast) -> bool:
    """Close answering (staff); False if it was closed already."""
    closed = Broadcast.objects.filter(pk=broadcast.pk, answers_closed_at__isnull=True).exclude(answers=[])
    done = bool(closed.update(answers_closed_at=timezone.now()))
    broadcast.refresh_from_db(fields=["answers_closed_at"])
    return done

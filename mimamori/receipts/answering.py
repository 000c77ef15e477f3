"""Recording answers (B1): the verb behind a 安否確認 page's 「回答する」 button.

A broadcast with answer choices asks, for each child a mail names, which choice applies; the
guardian's POST names a choice per child. Answering is confirming: the first answer for a child
writes its Receipt (and counts it confirmed, as a bare confirmation would), a later one replaces
the answer until answering closes (staff close it, or the links expire). The tally reads the
answer_0 … answer_5 counters of each audience group, which move with each answer in the UPDATE
that moves its `confirmed`: an answer writes the same rows as a confirmation, one receipt per
child and one class row.

On PostgreSQL all of that is one function call, mimamori_record_answers (receipts migration
0005): one round trip an answer, as the confirmation storm's one statement. The counters stay
exact without a lock of their own: the receipt's upsert takes the receipt's row lock and, in
its DO UPDATE, notes the answer it replaces (Receipt.replaced) from the locked, latest row
version, so two guardians answering for one child take turns on that row and each moves the
counters from the answer the other left; the class row's UPDATE adds to its latest version, so
answers for different children of one class add up. SQLite, which has no stored functions and
whose writers take turns anyway, runs the ORM path below.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Recipient
from mimamori.receipts.confirming import execute_prepared, find_link, is_expired
from mimamori.receipts.models import Receipt


class Outcome(enum.Enum):
    RECORDED = "recorded"  # at least one child's answer is new or changed
    UNCHANGED = "unchanged"  # every answer was already the one given


class AnsweringClosed(Exception):
    """Staff closed answering for this broadcast."""


@dataclass(frozen=True)
class Answered:
    outcome: Outcome
    named: int  # the children of the mail the answer named (0: none of them; nothing recorded)


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
        # SQLite's writers take turns: the transaction is IMMEDIATE (settings), so it holds the
        # database's one write lock from BEGIN and what it reads stays true to the end; no lock
        # of its own is needed for the counters to stay exact.
        groups = dict(
            Recipient.objects.filter(
                delivery_id=link.delivery_id, registrant_id__in=list(chosen)
            ).values_list("registrant_id", "group_id")
        )
        before = dict(
            Receipt.objects.filter(
                broadcast_id=link.broadcast_id, registrant_id__in=list(groups)
            ).values_list("registrant_id", "answer")
        )
        moves: dict[int, Counter[str]] = {}
        new, changed = [], []
        for registrant_id, group_id in sorted(groups.items()):
            answer = chosen[registrant_id]
            move = moves.setdefault(group_id, Counter())
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
                move["confirmed"] += 1
            elif (old := before[registrant_id]) != answer:
                changed.append(registrant_id)
                if old is not None:
                    move[f"answer_{old}"] -= 1
            else:
                continue
            move[f"answer_{answer}"] += 1
        Receipt.objects.bulk_create(new)
        for registrant_id in changed:
            Receipt.objects.filter(broadcast_id=link.broadcast_id, registrant_id=registrant_id).update(
                answer=chosen[registrant_id], answered_at=now, replaced=before[registrant_id]
            )
        for group_id, move in sorted(moves.items()):
            if deltas := {name: F(name) + delta for name, delta in move.items() if delta}:
                AudienceGroup.objects.filter(pk=group_id).update(**deltas)
    outcome = Outcome.RECORDED if new or changed else Outcome.UNCHANGED
    return Answered(outcome, len(groups))


def _record_in_one_call(token: str, chosen: dict[int, int]) -> Answered | None:
    now = timezone.now()
    oldest = now - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)
    # Prepared, as the confirmation's statement is: the call is planned once per connection.
    (result,) = execute_prepared(
        "mimamori_answer",
        "text, timestamptz, timestamptz, bigint[], integer[]",
        "SELECT mimamori_record_answers($1, $2, $3, $4, $5)",
        # Array literals as text: cheaper than adapting Python lists, and only digits.
        [token, oldest, now, _array(chosen), _array(chosen.values())],
    )
    if result == -1:  # unknown, expired, or no answer asked
        return None
    if result == -2:
        raise AnsweringClosed
    if result == -3:
        raise ValueError("answer out of range")
    named, changed = divmod(result, 2)
    return Answered(Outcome.RECORDED if changed else Outcome.UNCHANGED, named)


def _array(numbers: Iterable[int]) -> str:
    return "{" + ",".join(str(int(number)) for number in numbers) + "}"


def close_answers(broadcast: Broadcast) -> bool:
    """Close answering (staff); False if it was closed already."""
    closed = Broadcast.objects.filter(pk=broadcast.pk, answers_closed_at__isnull=True).exclude(answers=[])
    done = bool(closed.update(answers_closed_at=timezone.now()))
    broadcast.refresh_from_db(fields=["answers_closed_at"])
    return done

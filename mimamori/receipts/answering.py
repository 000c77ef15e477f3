"""Recording answers (B1): the verb behind a 安否確認 page's 「回答する」 button.

A broadcast with answer choices asks, for each child a mail names, which choice applies; the
guardian's POST names a choice per child. Answering is confirming: the first answer for a child
writes its Receipt (and counts it confirmed, as a bare confirmation would), a later one replaces
the answer until answering closes (staff close it, or the links expire). The tally reads the
answer_0 … answer_5 counters of each audience group, which move with each answer in the UPDATE
that moves its `confirmed`: an answer writes the same rows as a confirmation, one receipt per
child and one class row.

On PostgreSQL a child's first answer, nearly every answer of the storm after a 安否確認 mail,
is one prepared statement, like the confirmation's (_first_answer_sql). Everything else (an
answer changed, a child whose other guardian answered first, the refusals) is one call of the
function mimamori_record_answers (receipts migration 0005). In the function, the counters stay
exact without a lock of their own: the receipt's upsert takes the receipt's row lock and, in
its DO UPDATE, notes the answer it replaces (Receipt.replaced) from the locked, latest row
version, so two guardians answering for one child take turns on that row and each moves the
counters from the answer the other left; the class row's UPDATE adds to its latest version, so
answers for different children of one class add up. SQLite, which has no stored functions and
whose writers take turns anyway, runs the ORM path below.
"""

from __future__ import annotations

import enum
import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery, Recipient
from mimamori.receipts.confirming import execute_prepared, find_link, is_expired, quoted_table
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

    def with_arrays() -> list[str | datetime]:
        # Array literals as text: cheaper than adapting Python lists, and only digits.
        return [token, oldest, now, _array(chosen), _array(chosen.values())]

    if len(chosen) == 1:  # most mails name one child
        ((registrant, choice),) = chosen.items()
        usable, named, inserted, kept = execute_prepared(
            "mimamori_first_answer_one",
            "text, timestamptz, timestamptz, bigint, integer",
            _first_answer_one_sql(),
            [token, oldest, now, str(int(registrant)), str(int(choice))],
        )
    else:
        usable, named, inserted, kept = execute_prepared(
            "mimamori_first_answer",
            "text, timestamptz, timestamptz, bigint[], integer[]",
            _first_answer_sql(),
            with_arrays(),
        )
    if usable and inserted + kept == named:
        return Answered(Outcome.RECORDED if inserted else Outcome.UNCHANGED, named)
    # Anything else (an answer changed, a receipt another guardian's answer wrote meanwhile,
    # answering closed, a choice out of range, an unknown or expired link) is the function's;
    # what the statement above inserted, it finds answered as asked and leaves alone.
    (result,) = execute_prepared(
        "mimamori_answer",
        "text, timestamptz, timestamptz, bigint[], integer[]",
        "SELECT mimamori_record_answers($1, $2, $3, $4, $5)",
        with_arrays(),
    )
    if result == -1:  # unknown, expired, or no answer asked
        return None
    if result == -2:
        raise AnsweringClosed
    if result == -3:
        raise ValueError("answer out of range")
    named, changed = divmod(result, 2)
    return Answered(Outcome.RECORDED if changed or inserted else Outcome.UNCHANGED, named)


@functools.cache  # built once: its text is needed only when a connection prepares it
def _first_answer_sql() -> str:
    """The answer storm's statement: first answers only, in one round trip, as the confirmation's
    (confirming._confirm_sql). Nearly every answer in the minutes after a 安否確認 mail is a
    child's first: its receipt is inserted and its class row's counters only grow, so one
    statement of data-modifying CTEs on one snapshot keeps them exact (an increment never takes
    a counter below 0, whatever a concurrent answer added meanwhile). A receipt that exists
    already (the answer changed, or the child's other guardian answered first) is skipped here
    (ON CONFLICT DO NOTHING): if the statement's snapshot shows it holding the answer given
    (the same choice sent again, or from the child's other address), nothing is left to do;
    otherwise it is left to mimamori_record_answers, which replaces answers under the receipt's
    row lock. Nothing is inserted unless the link is usable: known, not expired, answering open
    and every choice in range (two array comparisons on the broadcast's row, so the plan finds
    the broadcast by its key as the confirmation's does). Returns (usable, children named,
    inserted, kept: receipts that already held the answer given, looked up only when something
    was not inserted: PostgreSQL runs a CASE branch's sub-select only when it is taken).
    Locks in the function's order, the receipts by child, then the class rows by id (`locked`:
    an UPDATE has no order of its own, and siblings of two classes answered from two addresses
    at once, one mail here and one in the function, deadlocked once in CI's concurrency test).
    Parameters as the function's: $1 token, $2 oldest sending time, $3 now, $4 registrant ids,
    $5 choice indexes."""
    counters = ", ".join(
        f"answer_{index} = g.answer_{index} + c.a{index}" for index in range(len(AudienceGroup.ANSWER_FIELDS))
    )
    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE i.answer = {index}) AS a{index}"
        for index in range(len(AudienceGroup.ANSWER_FIELDS))
    )
    return f"""
        WITH link AS (
            SELECT d.id, d.broadcast_id FROM {quoted_table(Delivery)} d
            JOIN {quoted_table(Broadcast)} b ON b.id = d.broadcast_id
            WHERE d.confirmation_token = $1 AND b.request_confirmation
              AND COALESCE(b.send_requested_at, b.created_at) > $2
              AND b.answers_closed_at IS NULL AND b.answers <> '[]'::jsonb
              AND 0 <= ALL ($5::integer[]) AND jsonb_array_length(b.answers) > ALL ($5::integer[])
        ), chosen AS (
            SELECT r.registrant_id, r.group_id, c.answer
            FROM link, unnest($4::bigint[], $5::integer[]) AS c (registrant_id, answer)
            JOIN {quoted_table(Recipient)} r ON r.registrant_id = c.registrant_id
            WHERE r.delivery_id = link.id
        ), inserted AS (
            INSERT INTO {quoted_table(Receipt)} AS rc
                   (broadcast_id, registrant_id, delivery_id, confirmed_at, answer, answered_at)
            SELECT link.broadcast_id, chosen.registrant_id, link.id, $3, chosen.answer, $3
            FROM link, chosen ORDER BY chosen.registrant_id
            ON CONFLICT (broadcast_id, registrant_id) DO NOTHING
            RETURNING rc.registrant_id, rc.answer
        ), locked AS MATERIALIZED (
            SELECT g.id FROM {quoted_table(AudienceGroup)} g
            WHERE g.id IN (SELECT chosen.group_id FROM inserted i JOIN chosen USING (registrant_id))
            ORDER BY g.id FOR UPDATE
        ), counted AS (
            UPDATE {quoted_table(AudienceGroup)} g SET confirmed = g.confirmed + c.n, {counters}
            FROM (
                SELECT chosen.group_id, COUNT(*) AS n, {counts}
                FROM inserted i JOIN chosen USING (registrant_id)
                GROUP BY chosen.group_id
            ) c
            WHERE g.id = c.group_id AND g.id IN (SELECT id FROM locked)
        )
        SELECT EXISTS (SELECT FROM link), (SELECT COUNT(*) FROM chosen), (SELECT COUNT(*) FROM inserted),
               CASE WHEN (SELECT COUNT(*) FROM inserted) = (SELECT COUNT(*) FROM chosen) THEN 0 ELSE (
                   SELECT COUNT(*) FROM link, chosen JOIN {quoted_table(Receipt)} rc
                   ON rc.registrant_id = chosen.registrant_id AND rc.answer = chosen.answer
                   WHERE rc.broadcast_id = link.broadcast_id
               ) END
    """  # noqa: S608


@functools.cache
def _first_answer_one_sql() -> str:
    """_first_answer_sql() for a mail naming one child, the usual case: the same checks, writes
    and four values, with $4 and $5 one registrant id and one choice instead of arrays. Without
    the arrays' unnest, the sort and the per-choice aggregates, an answer costs PostgreSQL about
    what a confirmation does (bench.answers, docs/performance.md)."""
    counters = ", ".join(
        f"answer_{index} = g.answer_{index} + ($5 = {index})::integer"
        for index in range(len(AudienceGroup.ANSWER_FIELDS))
    )
    return f"""
        WITH link AS (
            SELECT d.id, d.broadcast_id FROM {quoted_table(Delivery)} d
            JOIN {quoted_table(Broadcast)} b ON b.id = d.broadcast_id
            WHERE d.confirmation_token = $1 AND b.request_confirmation
              AND COALESCE(b.send_requested_at, b.created_at) > $2
              AND b.answers_closed_at IS NULL AND $5 >= 0 AND $5 < jsonb_array_length(b.answers)
        ), chosen AS (
            SELECT r.group_id FROM link JOIN {quoted_table(Recipient)} r
            ON r.delivery_id = link.id AND r.registrant_id = $4
        ), inserted AS (
            INSERT INTO {quoted_table(Receipt)} AS rc
                   (broadcast_id, registrant_id, delivery_id, confirmed_at, answer, answered_at)
            SELECT link.broadcast_id, $4, link.id, $3, $5, $3 FROM link, chosen
            ON CONFLICT (broadcast_id, registrant_id) DO NOTHING
            RETURNING 1
        ), counted AS (
            UPDATE {quoted_table(AudienceGroup)} g SET confirmed = g.confirmed + 1, {counters}
            FROM chosen WHERE g.id = chosen.group_id AND EXISTS (SELECT FROM inserted)
        )
        SELECT EXISTS (SELECT FROM link), (SELECT COUNT(*) FROM chosen), (SELECT COUNT(*) FROM inserted),
               CASE WHEN EXISTS (SELECT FROM inserted) THEN 0 ELSE (
                   SELECT COUNT(*) FROM link, chosen, {quoted_table(Receipt)} rc
                   WHERE rc.broadcast_id = link.broadcast_id AND rc.registrant_id = $4 AND rc.answer = $5
               ) END
    """  # noqa: S608


def _array(numbers: Iterable[int]) -> str:
    return "{" + ",".join(str(int(number)) for number in numbers) + "}"


def close_answers(broadcast: Broadcast) -> bool:
    """Close answering (staff); False if it was closed already."""
    closed = Broadcast.objects.filter(pk=broadcast.pk, answers_closed_at__isnull=True).exclude(answers=[])
    done = bool(closed.update(answers_closed_at=timezone.now()))
    broadcast.refresh_from_db(fields=["answers_closed_at"])
    return done

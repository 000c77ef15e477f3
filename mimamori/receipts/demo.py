"""The demo's past broadcasts (a step of registry/demo.py's load_demo()): what staff open first,
the statistics with their curve, the unconfirmed list, the tally of a 安否確認, and what a
guardian reads in 受信履歴, all with something true to show.

Three broadcasts of 岩見沢市, oldest first: last week's 休校 for every school of the city, with a
reminder to the unconfirmed; the city's 安否確認 drill three days ago, answered and then closed;
yesterday's 不審者情報 at 緑小学校. Each is written by the product's own verbs where they
are what happened (compose and resolve_scope, the fan-out, address health, the reminder's
choice of mails), at the moment it happened:

- the fan-out (broadcasts/fanout.py) writes the deliveries, recipients and class rows, and
  queues its chunks as it always does: run by the worker when the demo starts, they find every
  mail done and change nothing;
- the relay's replies are then written as delivery records them, in batches of 20 a moment
  apart: most accepted at once, a few after one deferral (two attempts), a few bounced later
  (failed, "bounce: …", counted against the address by registry/health.py);
- guardians press the links: each press confirms (or answers for) every child the mail names
  that has no receipt yet, as confirming.confirm_link and answering.record_answers do, at a
  time after the mail arrived; a press after answering closed records nothing;
- the counters (AudienceGroup.confirmed, answer_0 …) are set from the receipts written, so that
  they equal a recount (tests/test_demo.py recounts them).

The audit log gets what these actions recorded: the staff's logins, broadcast.sent,
reminder.sent, broadcast.answers_closed, at their moments (registry.demo.record_past).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Max

from mimamori.accounts.models import User
from mimamori.broadcasts import delivery, fanout, sending
from mimamori.broadcasts.models import (
    AudienceGroup,
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Recipient,
)
from mimamori.broadcasts.targeting import broadcast_municipality, resolve_scope
from mimamori.mail.bounces import Failure
from mimamori.mail.smtp import retry_delay
from mimamori.receipts.models import Receipt, Reminder
from mimamori.receipts.reminders import unconfirmed_recipients
from mimamori.registry import alert_templates, demo, health
from mimamori.registry.models import AddressFailure, AlertTemplate, Municipality, Registrant

# Mails a second that the relay accepted (batches of 20 recorded together, as delivery does).
RATE = 150
BATCH = 20
DEFERRED = 0.006  # a carrier said "try again later" once
BOUNCED = 0.004  # accepted, and a bounce came back minutes later
# What the bounces said: a full mailbox, and a carrier's filter refusing the school's domain
# (迷惑メール設定: the guardian must allow the domain). Neither says the address is wrong.
BOUNCES = [
    Failure(True, "5.2.2", "smtp; 552 5.2.2 Mailbox full"),
    Failure(True, "5.7.1", "smtp; 554 5.7.1 Message rejected by recipient's filter settings"),
]


@dataclass(frozen=True)
class Past:
    """One past broadcast and how its guardians answered it."""

    sender: str  # the staff login that sent it
    scope: dict[str, list[str] | list[int]]  # resolve_scope's arguments (by code or school)
    template: str  # the city's alert template it was written from
    values: dict[str, str]  # the template's fields, filled in
    days_ago: int
    at: tuple[int, int]  # local hour and minute it was sent
    press: float  # how likely the guardian at one address presses its link
    minutes: float  # how long after arrival half of those presses came
    subject_prefix: str = ""
    reminder: tuple[int, int] | None = None  # when staff sent one by hand, local hour and minute
    press_again: float = 0.0  # how likely a reminded address presses then
    closed: tuple[int, int] | None = None  # when staff closed answering
    answers: tuple[float, ...] = ()  # how the children are, by choice (a 安否確認)
    # The demo guardian's child: confirmed (True), or not yet (False: the link is still open).
    guardian_confirms: bool = True


PAST = [
    Past(
        sender="iwamizawa",
        scope={"municipality_codes": ["iwamizawa"]},
        template="休校",
        values={
            "when": "本日",
            "what": "暴風警報が発表され、登校時の安全が確保できない",
            "request": "お子様はご自宅で過ごさせてください。\n"
            "学校からの課題は、明日以降の授業でお知らせします。",
        },
        days_ago=6,
        at=(6, 10),
        press=0.62,
        minutes=25,
        reminder=(7, 40),
        press_again=0.5,
    ),
    Past(
        sender="iwamizawa",
        scope={"municipality_codes": ["iwamizawa"]},
        template="地震発生時の安否確認",
        subject_prefix="【訓練】",
        values={
            "when": "本日10時",
            "what": "岩見沢市で震度5強の地震が発生したとの想定で、安否確認の訓練を行っています",
            "request": "これは訓練です。実際の地震ではありません。\n"
            "15時までに、お子様ごとに回答してください。",
        },
        days_ago=3,
        at=(10, 5),
        press=0.66,
        minutes=18,
        closed=(15, 0),
        answers=(0.95, 0.03, 0.02),
    ),
    Past(
        sender="midori",
        scope={"school_ids": []},  # the school's own
        template="不審者情報",
        values={
            "when": "本日15時40分",
            "where": "緑町2丁目の公園付近",
            "what": "下校中の児童に声をかけ、車に誘う男性がいた",
            "request": "お子様には、知らない人に声をかけられても近づかず、すぐに近くの大人に"
            "知らせるようお話しください。\n明日の登校は、できるだけ複数でお願いします。",
        },
        days_ago=1,
        at=(16, 20),
        press=0.64,
        minutes=30,
        guardian_confirms=False,
    ),
]


def load_past_broadcasts(now: datetime) -> None:
    rng = random.Random(demo.SEED + 1)
    for past in PAST:
        _Writer(past, now, rng).write()


@dataclass
class _Press:
    at: datetime
    delivery_id: int
    fixed: bool = False  # the answer given is the child's own (a second press corrects a slip)


class _Writer:
    def __init__(self, past: Past, now: datetime, rng: random.Random) -> None:
        self.past, self.now, self.rng = past, now, rng
        self.sent = demo.local_moment(now, past.days_ago, *past.at)
        self.accepted: dict[int, datetime] = {}  # delivery id → when its last mail was accepted
        self.named: dict[int, list[int]] = {}  # delivery id → the registrants its mail names
        self.group_of: dict[int, int] = {}  # registrant → class row
        self.receipts: dict[int, Receipt] = {}  # registrant → its receipt
        self.states: dict[int, int] = {}  # registrant → how the child is (a 安否確認)
        self.guardian = Registrant.objects.get(account__username=demo.GUARDIAN_LOGIN_ID).pk

    def write(self) -> None:
        past, sent = self.past, self.sent
        user = User.objects.get(username=past.sender)
        self.broadcast = broadcast = self._compose(user)
        demo.staff_login(user, sent - timedelta(minutes=self.rng.randrange(4, 12)))
        # As sending.send starts it (its update), at the moment it was sent.
        Broadcast.objects.filter(pk=broadcast.pk, status=BroadcastStatus.DRAFT).update(
            status=BroadcastStatus.SENDING, send_requested_at=sent
        )
        self._record(sent, "broadcast.sent", user, subject=broadcast.subject, urgent=broadcast.urgent)
        while fanout.fan_out(broadcast.pk):
            pass
        for delivery_id, registrant_id, group_id in Recipient.objects.filter(broadcast=broadcast).values_list(
            "delivery_id", "registrant_id", "group_id"
        ):
            self.named.setdefault(delivery_id, []).append(registrant_id)
            self.group_of[registrant_id] = group_id
        presses = self._presses(self._deliver())
        closes = demo.local_moment(self.now, past.days_ago, *past.closed) if past.closed else None
        if past.reminder:
            reminded = demo.local_moment(self.now, past.days_ago, *past.reminder)
            self._confirm([p for p in presses if p.at < reminded], closes)
            presses = [p for p in presses if p.at >= reminded] + self._remind(user, reminded)
        self._confirm(presses, closes)
        self._count()
        if closes is not None:
            Broadcast.objects.filter(pk=broadcast.pk).update(answers_closed_at=closes)
            self._record(closes, "broadcast.answers_closed", user, subject=broadcast.subject)
        delivery.finish_if_done(broadcast.pk)
        last = Delivery.objects.filter(broadcast=broadcast).aggregate(last=Max("accepted_at"))["last"]
        Broadcast.objects.filter(pk=broadcast.pk).update(
            created_at=sent - timedelta(minutes=self.rng.randrange(2, 5), seconds=self.rng.randrange(60)),
            fan_out_queued_at=sent,
            fanned_out_at=sent + timedelta(milliseconds=400),
            finished_at=last,
        )

    def _compose(self, user: User) -> Broadcast:
        past = self.past
        template = AlertTemplate.objects.get(municipality=_city(user), name=past.template)
        subject, body = alert_templates.fill(template, past.values)
        scope = resolve_scope(user, **past.scope)  # type: ignore[arg-type]
        return sending.compose(
            user,
            subject=past.subject_prefix + subject,
            body=body,
            scope=scope,
            urgent=template.urgent,
            request_confirmation=template.request_confirmation,
            answers=template.answers,
        )

    def _record(self, at: datetime, action: str, user: User, **details: object) -> None:
        demo.record_past(
            at,
            action,
            actor=user,
            target=f"broadcast {self.broadcast.pk}",
            municipality=broadcast_municipality(self.broadcast),
            ip_address=demo.STAFF_ADDRESSES.get(user.get_username()),
            **details,
        )

    # --- the relay's replies --------------------------------------------------------------

    def _deliver(self) -> set[int]:
        """Record every mail's outcome as delivery would have; the ids that bounced."""
        rows = list(
            Delivery.objects.filter(broadcast=self.broadcast)
            .order_by("chunk", "pk")
            .values_list("pk", "email")
        )
        outcomes: list[tuple[str, int, datetime, str, int, int]] = []
        bounced: set[int] = set()
        guardian = {a.lower() for a in demo.GUARDIAN_ADDRESSES}
        start = self.sent + timedelta(milliseconds=700)
        for index, (pk, email) in enumerate(rows):
            at = start + timedelta(seconds=(index // BATCH + 1) * BATCH / RATE)
            chance = self.rng.random()
            if email.lower() in guardian:
                chance = 1.0
            if chance < DEFERRED:
                # 4xx once; accepted when retried, in a later batch.
                at += retry_delay(1) + timedelta(milliseconds=self.rng.randrange(200, 900))
                outcomes.append((DeliveryStatus.ACCEPTED, 2, at, "", 0, pk))
            elif chance < DEFERRED + BOUNCED and not _bouncing(email):
                failure = self.rng.choice(BOUNCES)
                outcomes.append((DeliveryStatus.FAILED, 1, at, f"bounce: {failure.text}", 0, pk))
                bounced.add(pk)
                came_back = at + timedelta(minutes=self.rng.randrange(2, 40))
                health.record_failure(email, failure, source="bounce")
                # registry/health.py wrote it now; it came back then.
                latest = AddressFailure.objects.filter(email=email.lower()).order_by("-pk")[:1]
                AddressFailure.objects.filter(pk__in=list(latest.values_list("pk", flat=True))).update(
                    at=came_back
                )
            else:
                outcomes.append((DeliveryStatus.ACCEPTED, 1, at, "", 0, pk))
            self.accepted[pk] = at
        _set_outcomes(outcomes)
        return bounced

    # --- guardians pressing the links -----------------------------------------------------

    def _delay(self, minutes: float) -> timedelta:
        """How long a guardian took to press the link: most within the hour, a long tail."""
        median = math.log(minutes * 60)
        return timedelta(seconds=min(self.rng.lognormvariate(median, 1.1), 36 * 3600))

    def _presses(self, bounced: set[int]) -> list[_Press]:
        past = self.past
        guardian = _guardian_deliveries(self.broadcast)
        presses = []
        for delivery_id, arrived in self.accepted.items():
            if delivery_id in bounced:
                continue  # it never arrived
            if delivery_id in guardian:
                if past.guardian_confirms and delivery_id == min(guardian):
                    presses.append(_Press(arrived + timedelta(minutes=7, seconds=12), delivery_id))
                continue
            if self.rng.random() < past.press:
                presses.append(_Press(arrived + self._delay(past.minutes), delivery_id))
        return presses

    def _remind(self, user: User, at: datetime) -> list[_Press]:
        """A reminder by hand at ``at``, as reminders.send_reminder sends it: the mails of the
        unconfirmed (reminders.unconfirmed_recipients) again, as round 1; then their presses."""
        broadcast = self.broadcast
        again = sorted(
            set(unconfirmed_recipients(broadcast).values_list("delivery_id", flat=True).order_by())
        )
        start = at + timedelta(milliseconds=600)
        outcomes = []
        presses = []
        for index, delivery_id in enumerate(again):
            arrived = start + timedelta(seconds=(index // BATCH + 1) * BATCH / RATE)
            outcomes.append((DeliveryStatus.ACCEPTED, 1, arrived, "", 1, delivery_id))
            if self.rng.random() < self.past.press_again:
                presses.append(_Press(arrived + self._delay(self.past.minutes), delivery_id))
            self.accepted[delivery_id] = arrived
        _set_outcomes(outcomes)
        Reminder.objects.create(
            broadcast=broadcast, number=1, sent_at=at, created_by=user, messages=len(again)
        )
        Broadcast.objects.filter(pk=broadcast.pk).update(reminders_sent=1)
        self._record(at, "reminder.sent", user, reminder=1, automatic=False, messages=len(again))
        return presses

    def _confirm(self, presses: list[_Press], closes: datetime | None) -> None:
        """Each press in time order: a receipt for every child the mail names that has none
        (confirm_link), or, for a 安否確認, the answer for each (record_answers)."""
        latest = self.now - timedelta(minutes=1)
        queue = sorted(presses, key=lambda p: (p.at, p.delivery_id))
        written: dict[int, Receipt] = {}
        changed: set[int] = set()  # receipts written before this call whose answer changed
        while queue:
            press = queue.pop(0)
            # A press is never before its mail arrived (a reminder's mail arrives again).
            at = max(press.at, self.accepted[press.delivery_id] + timedelta(seconds=20))
            if at > latest or (closes is not None and at >= closes):
                continue
            slipped = False
            for registrant_id in self.named[press.delivery_id]:
                answer = self._answer(registrant_id, press.fixed)
                receipt = self.receipts.get(registrant_id)
                if receipt is None:
                    self.receipts[registrant_id] = written[registrant_id] = Receipt(
                        broadcast=self.broadcast,
                        registrant_id=registrant_id,
                        delivery_id=press.delivery_id,
                        confirmed_at=at,
                        answer=answer,
                        answered_at=at if answer is not None else None,
                    )
                    slipped = slipped or (answer is not None and answer != self._state(registrant_id))
                elif answer is not None and receipt.answer != answer:
                    receipt.replaced, receipt.answer, receipt.answered_at = receipt.answer, answer, at
                    if registrant_id not in written:
                        changed.add(registrant_id)
            if slipped:
                # The guardian chose the wrong button, saw it on the page and answered again.
                at_again = at + timedelta(minutes=self.rng.randrange(1, 20))
                queue.append(_Press(at_again, press.delivery_id, fixed=True))
                queue.sort(key=lambda p: (p.at, p.delivery_id))
        demo.insert_rows(
            Receipt,
            (
                {
                    "broadcast": r.broadcast_id,
                    "registrant": r.registrant_id,
                    "delivery": r.delivery_id,
                    "confirmed_at": r.confirmed_at,
                    "answer": r.answer,
                    "answered_at": r.answered_at,
                    "replaced": r.replaced,
                }
                for r in written.values()
            ),
        )
        for registrant_id in sorted(changed):
            receipt = self.receipts[registrant_id]
            Receipt.objects.filter(broadcast=self.broadcast, registrant_id=registrant_id).update(
                answer=receipt.answer, answered_at=receipt.answered_at, replaced=receipt.replaced
            )

    def _state(self, registrant_id: int) -> int:
        """How the child is (a 安否確認): drawn once per child; the demo guardian's is fine."""
        if registrant_id not in self.states and registrant_id == self.guardian:
            self.states[registrant_id] = 0
        if registrant_id not in self.states:
            weights = self.past.answers
            self.states[registrant_id] = self.rng.choices(range(len(weights)), weights=weights)[0]
        return self.states[registrant_id]

    def _answer(self, registrant_id: int, fixed: bool) -> int | None:
        if not self.past.answers:
            return None
        state = self._state(registrant_id)
        if fixed or registrant_id in self.receipts or registrant_id == self.guardian:
            return state
        if self.rng.random() < 0.02:
            return (state + 1) % len(self.past.answers)  # a slip of the finger
        return state

    def _count(self) -> None:
        """The class rows' counters, from the receipts: what confirm_link and record_answers
        would have added one press at a time."""
        confirmed: Counter[int] = Counter()
        answered: Counter[tuple[int, int]] = Counter()
        for registrant_id, receipt in self.receipts.items():
            group = self.group_of[registrant_id]
            confirmed[group] += 1
            if receipt.answer is not None:
                answered[group, receipt.answer] += 1
        table = connection.ops.quote_name(AudienceGroup._meta.db_table)
        columns = ", ".join(f"{name} = %s" for name in ("confirmed", *AudienceGroup.ANSWER_FIELDS))
        groups = AudienceGroup.objects.filter(broadcast=self.broadcast).values_list("pk", flat=True)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {columns} WHERE id = %s",  # noqa: S608 (names from the model)
                [
                    (
                        confirmed[group],
                        *(answered[group, index] for index in range(len(AudienceGroup.ANSWER_FIELDS))),
                        group,
                    )
                    for group in groups
                ],
            )


def _city(user: User) -> Municipality:
    if user.municipality is not None:
        return user.municipality
    assert user.school is not None
    return user.school.municipality


def _guardian_deliveries(broadcast: Broadcast) -> set[int]:
    return set(
        Recipient.objects.filter(
            broadcast=broadcast, registrant__account__username=demo.GUARDIAN_LOGIN_ID
        ).values_list("delivery_id", flat=True)
    )


def _bouncing(email: str) -> bool:
    """Mail to it failed before: the demo bounces each address once at most, so that none is
    suppressed (which would mail its guardian a notice when the demo starts)."""
    return AddressFailure.objects.filter(email=email.lower()).exists()


def _set_outcomes(rows: Sequence[tuple[str, int, datetime, str, int, int]]) -> None:
    """(status, attempts, accepted_at, reply, round, id): each row as delivery._record (and a
    reminder, for round 1) leaves it: no claim, nothing due."""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET status = %s, attempts = %s, accepted_at = %s, reply = %s,"  # noqa: S608
            " round = %s, next_attempt_at = NULL, claim = NULL, claimed_at = NULL WHERE id = %s",
            [
                (status, attempts, connection.ops.adapt_datetimefield_value(at), reply, round_, pk)
                for status, attempts, at, reply, round_, pk in rows
            ],
        )

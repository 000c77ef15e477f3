"""Delivery of one chunk of a broadcast over SMTP (S2, P4).

A chunk's open rows are claimed with one conditional UPDATE, so two workers given the same
chunk never send the same row. Several SMTP connections then send in parallel, each reused
for many messages, while this thread records the outcomes in small batches. A mail the relay
accepted is recorded within FLUSH_SECONDS or FLUSH_ROWS; only those in flight or not yet
recorded when a worker is killed can be sent a second time, when the claim's lease runs out
(see sweep.py). While it works, the task renews its lease. When the database goes away
instead, the task stops sending and keeps what the relay accepted until it can write it
(_record_when_back), so an outage shorter than the lease sends nothing twice.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from mimamori.broadcasts import lanes
from mimamori.broadcasts import mails as broadcast_mails
from mimamori.broadcasts.models import (
    OPEN_STATUSES,
    Broadcast,
    BroadcastKind,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Recipient,
)
from mimamori.mail import bounces, carriers, messages, signing, verp
from mimamori.mail.smtp import Outcome, Reply, SmtpSession, retry_delay
from mimamori.registry import health
from mimamori.registry.models import School

log = logging.getLogger(__name__)
T = TypeVar("T")

FLUSH_ROWS = 20
FLUSH_SECONDS = 0.2
WATCH_SECONDS = 0.1  # how often the recording loop looks for mails waiting too long on a reply
RECORDED_FIELDS = [
    "status",
    "attempts",
    "next_attempt_at",
    "claim",
    "claimed_at",
    "reply",
]


@dataclass
class Mail:
    """One claimed delivery: what sending its mail and recording the outcome need."""

    pk: int
    email: str
    school: School
    confirmation_token: str | None
    round: int
    attempts: int
    message_id: str
    children: list[broadcast_mails.Child] = field(default_factory=list)


@dataclass
class Attempt:
    row: Mail
    reply: Reply
    at: datetime
    lane: Lane
    seconds: float = 0.0  # how long the relay took over it


class Lane:
    """One carrier group's share of a chunk (mail/carriers.py): its mails, the sessions it holds
    (one sender thread each) and, for a rate-limited group, the start times it reserved."""

    def __init__(self, profile: carriers.Profile) -> None:
        self.profile = profile
        self.rows: list[Mail] = []
        self.work: queue.Queue[Mail] = queue.Queue()
        self.leases: list[int] = []
        self.pace: carriers.Pace | None = None
        self.turns = itertools.count()
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []
        # Sender thread → when its mail went to the relay, and which mail.
        self.in_flight: dict[int, tuple[float, int]] = {}
        self.counted_slow: set[int] = set()  # mails already counted as trouble while in flight
        self.recovered = False
        self.through = False  # a mail got through since the lane last reported trouble

    def next(self) -> Mail | None:
        """The next mail to send, at its reserved time; None once the lane is done or stopped."""
        if self.stopped.is_set():
            return None
        try:
            row = self.work.get_nowait()
        except queue.Empty:
            return None
        if self.pace is not None:
            time.sleep(max(0.0, self.pace.turn(next(self.turns)) - time.time()))
        return row

    def stop(self) -> list[Mail]:
        """No more mails from this lane: returns those it had not started."""
        self.stopped.set()
        return _drain(self.work)

    def straggling(self, now: float, patience: float) -> bool:
        """Every sender of this lane that is still alive has waited on a reply for longer than
        ``patience``, or the lane was stopped: nothing else of the chunk should wait for it."""
        alive = [thread for thread in self.threads if thread.is_alive()]
        return bool(alive) and (
            self.stopped.is_set()
            or all(now - self.in_flight.get(thread.ident or 0, (now, 0))[0] > patience for thread in alive)
        )


class Outcomes:
    """Where sender threads leave their attempts: for the chunk's recording loop while it runs,
    and, once it has moved on, recorded by the sender itself.

    The loop moves on when all that is left is waiting on slow replies of troubled groups, so a
    slow destination never holds the worker (and with it every other group's mail, B12). A mail
    in flight cannot be taken back without risking a second copy, so its sender finishes it,
    records it on a database connection of its own, gives its session back, and the last of
    them does what the end of the chunk does.
    """

    def __init__(self, broadcast: Broadcast, chunk: int, senders: int) -> None:
        self.broadcast, self.chunk = broadcast, chunk
        self.queue: queue.Queue[Attempt] = queue.Queue()
        self.lock = threading.Lock()
        self.left = False
        self.running = senders
        self.free_leases: list[int] = []  # of senders done while the loop ran: it gives them back

    def put(self, attempt: Attempt) -> None:
        with self.lock:
            if not self.left:
                self.queue.put(attempt)
                return
        try:
            _record_when_back([attempt], time.monotonic() + _patience_for_the_database())
            _observe(attempt)
        except Exception:
            # The row stays claimed: when its lease runs out the sweep offers it again.
            log.exception("could not record delivery %s", attempt.row.pk)

    def sender_done(self, lease: int) -> None:
        with self.lock:
            self.running -= 1
            if not self.left:
                self.free_leases.append(lease)
                return
            last = self.running == 0
        try:
            carriers.release([lease])
            if last:
                _schedule_retry(self.broadcast, self.chunk)
                finish_if_done(self.broadcast.pk)
        except Exception:
            # The lease runs out by itself, and the sweep queues what is due and finishes.
            log.exception("could not end chunk %s of broadcast %s", self.chunk, self.broadcast.pk)
        finally:
            connection.close()  # this thread's own

    def leave(self) -> list[Attempt]:
        """The loop moves on: the attempts it has not read yet; later ones their senders record."""
        with self.lock:
            self.left = True
            return _drain(self.queue)


def deliver_chunk(broadcast_id: int, chunk: int) -> int:
    """Send the chunk's pending and due deferred mails; return how many were offered."""
    claim = uuid.uuid4()
    claimed = _claim(broadcast_id, chunk, claim)
    if claimed:
        broadcast = Broadcast.objects.get(pk=broadcast_id)
        _send_claimed(broadcast, chunk, claim, _mails(broadcast_id, claimed))
        _schedule_retry(broadcast, chunk)
    finish_if_done(broadcast_id)
    return len(claimed)


def _claim(broadcast_id: int, chunk: int, claim: uuid.UUID) -> list[tuple[Any, ...]]:
    """Take the chunk's pending and due deferred rows for this task and read what their mails
    need, in one statement (it was three, two of them with 500 ids to send and parse).

    SKIP LOCKED: a second task for the same chunk (a sweep's re-queue, say) takes what is
    left instead of waiting on, or deadlocking with, the one already at work. (SQLite has no
    row locks: it runs one writing transaction at a time.)
    """
    now = timezone.now()
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    table = connection.ops.quote_name(Delivery._meta.db_table)
    sql = f"""
        UPDATE {table} SET status = %s, claim = %s, claimed_at = %s
        WHERE id IN (
            SELECT id FROM {table}
            WHERE broadcast_id = %s AND chunk = %s AND status IN (%s, %s)
              AND (next_attempt_at IS NULL OR next_attempt_at <= %s){skip_locked}
        )
        RETURNING id, email, school_id, confirmation_token, round, attempts
    """  # noqa: S608 - the table name from the model, values as parameters
    when = connection.ops.adapt_datetimefield_value(now)
    claim_value = Delivery._meta.get_field("claim").get_db_prep_value(claim, connection)
    # In a transaction of its own: on SQLite that takes the write lock first (IMMEDIATE), so
    # the statement waits for another writer instead of failing on a stale snapshot.
    with transaction.atomic(), connection.cursor() as cursor:
        setting = [DeliveryStatus.SENDING, claim_value, when]
        cursor.execute(
            sql, [*setting, broadcast_id, chunk, DeliveryStatus.PENDING, DeliveryStatus.DEFERRED, when]
        )
        return list(cursor.fetchall())


def _mails(broadcast_id: int, claimed: list[tuple[Any, ...]]) -> list[Mail]:
    """The claimed rows with their sending schools and the children each mail names, read as
    values rather than model instances (building those cost a tenth of a mail's CPU)."""
    ids = [row[0] for row in claimed]
    # Recipients by their (delivery, registrant) index, the child by primary key: a plan that
    # stays right for a broadcast written moments ago, before any statistics exist for it.
    named = list(
        Recipient.objects.filter(delivery_id__in=ids).values_list(
            "delivery_id",
            "registrant__school_id",
            "registrant__grade",
            "registrant__class_name",
            "registrant__child_name_kana",
            "registrant__child_name",
        )
    )
    schools = School.objects.select_related("municipality").in_bulk(
        {row[2] for row in claimed} | {child[1] for child in named}
    )
    mails = {}
    for pk, email, school_id, token, round_, attempts in claimed:
        school = schools[school_id]
        message_id = Delivery.message_id_of(pk, round_, school.municipality.mail_domain)
        mails[pk] = Mail(pk, email, school, token, round_, attempts, message_id)
    # In the order the mail lists them: by grade, class and the reading of the name.
    for delivery_id, school_id, grade, class_name, _kana, name in sorted(named, key=lambda n: n[2:5]):
        mails[delivery_id].children.append(broadcast_mails.Child(schools[school_id], grade, class_name, name))
    return _schools_in_turn(sorted(mails.values(), key=lambda mail: mail.email))


def _schools_in_turn(mails: list[Mail]) -> list[Mail]:
    """Each sending school's first mail, then each one's second, and so on: a chunk that names
    many schools (the head of a city-wide broadcast, fanout.py) gives every school its first
    mails within its first moments, and a carrier group whose rate admits only part of the
    chunk now (_lanes) shares that part among the schools. One school's chunk keeps its order."""
    places: dict[int, int] = {}
    turns = []
    for mail in mails:
        place = places[mail.school.pk] = places.get(mail.school.pk, 0) + 1
        turns.append((place, mail))
    return [mail for _place, mail in sorted(turns, key=lambda turn: turn[0])]


def _send_claimed(broadcast: Broadcast, chunk: int, claim: uuid.UUID, rows: list[Mail]) -> None:
    lanes = _lanes(claim, rows, broadcast.urgent)
    # One builder for the chunk: it learns each school's header block once (see BroadcastMail).
    mails = broadcast_mails.BroadcastMail(
        subject=broadcast.subject, body=broadcast.body, urgent=broadcast.urgent, answers=broadcast.answers
    )
    # Broadcasts offer one-click unsubscribe where the municipality does; maintenance notices,
    # which every address must get, never.
    unsubscribe = broadcast.kind != BroadcastKind.MAINTENANCE
    # Each mail domain's DKIM signer (None: no key), read here, where the database may be used.
    signers = {
        domain: signing.signer_for(domain) for domain in {r.school.municipality.mail_domain for r in rows}
    }
    outcomes = Outcomes(broadcast, chunk, sum(len(lane.leases) for lane in lanes))
    for lane in lanes:
        for lease in lane.leases:
            thread = threading.Thread(
                target=_sender, args=(mails, lane, lease, outcomes, unsubscribe, signers), daemon=True
            )
            lane.threads.append(thread)
            thread.start()
    unrecorded: list[Attempt] = []  # read from the senders, not yet written
    try:
        _record_as_they_come(claim, [row.pk for row in rows], lanes, outcomes, unrecorded)
    except DatabaseError:
        # The database went away: no more mail goes out unrecorded. The senders finish the
        # mail in hand; what the relay accepted is written once the database is back, and
        # the mails not started are put back for the next try.
        log.warning("database unavailable while sending chunk %s of broadcast %s", chunk, broadcast.pk)
        deadline = time.monotonic() + _patience_for_the_database()
        unsent = [row for lane in lanes for row in lane.stop()]
        for lane in lanes:
            for thread in lane.threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
        unrecorded.extend(outcomes.leave())
        _record_when_back(unrecorded, deadline)
        _put_back(unsent, timezone.now())
        with contextlib.suppress(Exception):
            carriers.release(lease for lane in lanes for lease in lane.leases)
    except BaseException:
        for lane in lanes:
            lane.stop()
        with contextlib.suppress(Exception):
            carriers.release(lease for lane in lanes for lease in lane.leases)
        raise


def _lanes(claim: uuid.UUID, rows: list[Mail], urgent: bool) -> list[Lane]:
    """The claimed mails by carrier group, each group with the sessions it could take; what a
    group cannot send now (paused, no session free, past its rate) is put back for later."""
    profiles = carriers.current()
    grouped: dict[int, Lane] = {}
    for row in rows:
        profile = profiles.of(row.email)
        grouped.setdefault(profile.id, Lane(profile)).rows.append(row)
    now = timezone.now()
    later: list[tuple[list[Mail], datetime]] = []
    lanes = []
    for lane in grouped.values():
        if lane.profile.paused(now):
            later.append((lane.rows, lane.profile.paused_until or now))
        else:
            lanes.append(lane)
    leases = carriers.acquire(
        {lane.profile.id: _sessions_wanted(lane, len(rows)) for lane in lanes}, claim, urgent
    )
    busy = now + timedelta(seconds=settings.MIMAMORI_CARRIER_BUSY_SECONDS)
    ready = []
    for lane in lanes:
        lane.leases = leases.get(lane.profile.id, [])
        if not lane.leases:
            later.append((lane.rows, busy))
            continue
        if lane.profile.rate_per_minute:
            lane.pace = carriers.reserve(lane.profile, len(lane.rows))
            granted = lane.pace.granted
            if granted < len(lane.rows):
                again = lane.pace.turn(granted) - settings.MIMAMORI_CARRIER_HORIZON_SECONDS
                later.append((lane.rows[granted:], max(busy, _moment(again))))
                lane.rows = lane.rows[:granted]
        surplus = len(lane.leases) - len(lane.rows)
        if surplus > 0:
            carriers.release(lane.leases[len(lane.rows) :])
            lane.leases = lane.leases[: len(lane.rows)]
        for row in lane.rows:
            lane.work.put(row)
        if lane.rows:
            ready.append(lane)
    for unsent, when in later:
        _put_back(unsent, when)
    return ready


def _sessions_wanted(lane: Lane, claimed: int) -> int:
    """The chunk's MIMAMORI_SMTP_CONNECTIONS shared among its groups by their mails, rounded,
    one at least each (rounding up gave six sender threads where four had served the chunk, and
    cost a tenth more worker CPU a mail: docs/performance.md); after a pause, one session tries
    whether the group is back."""
    if lane.profile.pauses:
        return 1
    share = round(settings.MIMAMORI_SMTP_CONNECTIONS * len(lane.rows) / claimed)
    return max(1, min(share, len(lane.rows)))


def _moment(unix_time: float) -> datetime:
    return datetime.fromtimestamp(unix_time, tz=UTC)


def _put_back(rows: list[Mail], when: datetime) -> None:
    """Mails not offered to the relay wait for ``when``, their attempts untouched."""
    if rows:
        Delivery.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=DeliveryStatus.DEFERRED, claim=None, claimed_at=None, next_attempt_at=when
        )


def _drain(work: queue.Queue[T]) -> list[T]:
    items = []
    while True:
        try:
            items.append(work.get_nowait())
        except queue.Empty:
            return items


def _sender(
    mails: broadcast_mails.BroadcastMail,
    lane: Lane,
    lease: int,
    outcomes: Outcomes,
    unsubscribe: bool,
    signers: dict[str, signing.Signer | None],
) -> None:
    me = threading.get_ident()
    try:
        with SmtpSession(mails_per_connection=lane.profile.mails_per_session) as session:
            while (row := lane.next()) is not None:
                try:
                    content = _build(
                        mails,
                        school=row.school,
                        to=row.email,
                        children=row.children,
                        message_id=row.message_id,
                        confirmation_url=broadcast_mails.confirmation_url(row.confirmation_token)
                        if row.confirmation_token
                        else None,
                        reminder=row.round > 0,
                        unsubscribe_url=broadcast_mails.unsubscribe_url(row.pk)
                        if unsubscribe and row.school.municipality.one_click_unsubscribe
                        else None,
                        charset=lane.profile.charset,
                    )
                    # Signed last, over the final bytes (RSA in OpenSSL, which lets the other
                    # connections' threads run meanwhile).
                    signer = signers[row.school.municipality.mail_domain]
                    if signer is not None:
                        content = signer.sign(content)
                except Unbuildable as error:
                    # Data the mail cannot carry (a line break in a header value): another try
                    # builds the same mail, so it fails now, with the reason staff see.
                    log.warning("the mail for delivery %s cannot be built: %s", row.pk, error.reason)
                    reply, seconds = Reply(Outcome.PERMANENT, error.reason), 0.0
                except Exception as error:
                    # A bug must not strand the row in "sending": record it and retry later.
                    log.exception("could not build the mail for delivery %s", row.pk)
                    reply, seconds = Reply(Outcome.TEMPORARY, f"internal error: {error}"[:500]), 0.0
                else:
                    # Its own envelope sender, so that a bounce coming back later names this mail.
                    sender = verp.envelope_sender(verp.DELIVERY, row.pk, row.school.municipality.mail_domain)
                    began = time.monotonic()
                    lane.in_flight[me] = (began, row.pk)
                    reply = session.send(sender, row.email, content)
                    lane.in_flight.pop(me, None)
                    seconds = time.monotonic() - began
                outcomes.put(Attempt(row, reply, timezone.now(), lane, seconds))
    finally:
        outcomes.sender_done(lease)


class Unbuildable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _build(mails: broadcast_mails.BroadcastMail, **mail: Any) -> bytes:
    """The mail's bytes; Unbuildable, with the reason, for data no mail can carry."""
    try:
        return mails.as_bytes(**mail)
    except messages.BUILD_ERRORS as error:
        raise Unbuildable(messages.unbuildable(error)) from error


def _record_as_they_come(
    claim: uuid.UUID, ids: list[int], lanes: list[Lane], outcomes: Outcomes, batch: list[Attempt]
) -> None:
    """Read the senders' attempts and write them in batches. ``batch`` (the caller's list) holds
    those read and not yet written, so that they outlive a database error."""
    replies = ReplyTimes()
    last_flush = last_heartbeat = last_lease = last_watch = time.monotonic()
    lease = settings.MIMAMORI_DELIVERY_LEASE_SECONDS
    while True:
        try:
            attempt = outcomes.queue.get(timeout=FLUSH_SECONDS)
        except queue.Empty:
            moment = time.monotonic()
            working = [lane for lane in lanes if any(thread.is_alive() for thread in lane.threads)]
            if not working and outcomes.queue.empty():
                break
            if working and all(lane.straggling(moment, replies.patience()) for lane in working):
                # Only slow replies are left: put back what those groups have not started and
                # move on; their senders record the mails in hand themselves (Outcomes).
                for lane in working:
                    _put_back(
                        lane.stop(),
                        timezone.now() + timedelta(seconds=settings.MIMAMORI_CARRIER_BUSY_SECONDS),
                    )
                for attempt in outcomes.leave():
                    batch.append(attempt)
                    _observe(attempt)
                break
        else:
            batch.append(attempt)
            replies.add(attempt.seconds)
            _observe(attempt)
        moment = time.monotonic()
        if moment - last_watch >= WATCH_SECONDS:
            _watch(lanes, moment)
            last_watch = moment
        if len(batch) >= FLUSH_ROWS or (batch and moment - last_flush >= FLUSH_SECONDS):
            _record(batch)
            batch.clear()
            last_flush = moment
        if moment - last_heartbeat >= lease / 3:
            Delivery.objects.filter(pk__in=ids, claim=claim, status=DeliveryStatus.SENDING).update(
                claimed_at=timezone.now()
            )
            last_heartbeat = moment
        if moment - last_lease >= settings.MIMAMORI_CARRIER_LEASE_SECONDS / 3:
            carriers.renew(leased for lane in lanes for leased in lane.leases)
            last_lease = moment
    if batch:
        _record(batch)
        batch.clear()
    with outcomes.lock:
        carriers.release(outcomes.free_leases)
        outcomes.free_leases = []


class ReplyTimes:
    """How long the relay takes over a mail in this chunk, to tell a slow group from a busy one."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, seconds: float) -> None:
        if 0 < seconds < settings.MIMAMORI_CARRIER_SLOW_SECONDS:
            self.total += seconds
            self.count += 1

    def patience(self) -> float:
        """How long the chunk waits, once everything else is done, for a group whose every
        sender is waiting on a reply: twenty times the usual reply, a fifth of a second at
        least, MIMAMORI_CARRIER_SLOW_SECONDS at most (and before anything came back)."""
        slow = float(settings.MIMAMORI_CARRIER_SLOW_SECONDS)
        if not self.count:
            return slow
        return min(slow, max(0.2, 20 * self.total / self.count))


def _watch(lanes: list[Lane], now: float) -> None:
    """A mail still waiting for the relay's reply after MIMAMORI_CARRIER_SLOW_SECONDS is trouble
    for its group at once, not when the reply comes at last: a group that has stopped answering
    is paused within seconds, and every other task stops offering it mail."""
    slow = settings.MIMAMORI_CARRIER_SLOW_SECONDS
    for lane in lanes:
        for began, pk in list(lane.in_flight.values()):
            if now - began > slow and pk not in lane.counted_slow and not lane.stopped.is_set():
                lane.counted_slow.add(pk)
                until = carriers.troubled(lane.profile, f"no reply within {slow} s", anew=lane.through)
                lane.through = False
                if until is not None:
                    _put_back(lane.stop(), until)


def _observe(attempt: Attempt) -> None:
    """What an attempt says of its carrier group: enough trouble pauses the group (its unsent
    mails wait for the pause's end); the first mail through after trouble ends it."""
    lane, reply = attempt.lane, attempt.reply
    if attempt.row.pk in lane.counted_slow:
        return  # counted while it waited (_watch)
    reason = carriers.trouble_in(reply, attempt.seconds)
    if reason is not None:
        until = carriers.troubled(lane.profile, reason, anew=lane.through)
        lane.through = False
        if until is not None:
            _put_back(lane.stop(), until)
    elif reply.outcome is Outcome.ACCEPTED:
        lane.through = True
        if lane.profile.troubled and not lane.recovered:
            lane.recovered = True
            carriers.recovered(lane.profile)


def _record(batch: list[Attempt]) -> None:
    """Write a batch of outcomes: the accepted ones in one UPDATE, the rest row by row values.

    An accepted mail keeps its Message-ID (which relay logs show) and the batch's time; the
    relay's "250 … queued as …" is not stored, which keeps this, the busiest write of a
    broadcast, to a single short statement.
    """
    accepted = [a.row.pk for a in batch if a.reply.outcome is Outcome.ACCEPTED]
    if accepted:
        Delivery.objects.filter(pk__in=accepted).update(
            status=DeliveryStatus.ACCEPTED,
            accepted_at=max(a.at for a in batch),
            attempts=F("attempts") + 1,
            claim=None,
            claimed_at=None,
            next_attempt_at=None,
            reply="",
        )
    refused = [attempt for attempt in batch if attempt.reply.outcome is not Outcome.ACCEPTED]
    rows = [_outcome(attempt) for attempt in refused]
    if rows:
        Delivery.objects.bulk_update(rows, RECORDED_FIELDS)
    for attempt, row in zip(refused, rows, strict=True):
        # What the server said of this address counts towards its health; a cut connection,
        # a refused sender or a mail we could not build does not.
        if row.status == DeliveryStatus.FAILED and attempt.reply.about_recipient:
            health.record_failure(attempt.row.email, bounces.from_reply(attempt.reply), source="smtp")


def _patience_for_the_database() -> float:
    """How long outcomes may wait for the database: while the claim's lease (renewed every
    third of it) surely still holds, so that no other worker has taken the rows up again."""
    return settings.MIMAMORI_DELIVERY_LEASE_SECONDS * 2 / 3


def _record_when_back(batch: list[Attempt], deadline: float) -> None:
    """Write ``batch``, trying again with growing pauses while the database is away, until
    ``deadline`` (time.monotonic()); past it, the error goes up and the lease hands the rows
    back (the relay may then get these mails a second time)."""
    pause = 0.5
    while True:
        try:
            with transaction.atomic():
                _record(batch)
            return
        except DatabaseError:
            # A connection that lost its server is unusable: the next query opens a new one.
            connection.close()
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _outcome(attempt: Attempt) -> Delivery:
    """A refused mail's row: deferred for another try, or failed for good (5xx, or tried enough)."""
    mail, reply = attempt.row, attempt.reply
    row = Delivery(pk=mail.pk, attempts=mail.attempts + 1, claim=None, claimed_at=None, reply=reply.text)
    if reply.outcome is Outcome.PERMANENT or row.attempts >= settings.MIMAMORI_RETRY_MAX_ATTEMPTS:
        row.status = DeliveryStatus.FAILED
        row.next_attempt_at = None
    else:
        row.status = DeliveryStatus.DEFERRED
        row.next_attempt_at = attempt.at + retry_delay(row.attempts)
    return row


def _schedule_retry(broadcast: Broadcast, chunk: int) -> None:
    due = (
        Delivery.objects.filter(broadcast=broadcast, chunk=chunk, status=DeliveryStatus.DEFERRED)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if due is not None:
        lanes.queue_chunk(broadcast, chunk, run_after=due)


def finish_if_done(broadcast_id: int) -> bool:
    """Mark a fanned-out broadcast sent once none of its mails is still open.

    One statement, checking both on one snapshot. As two (are any open? then mark it if it
    is fanned out), a chunk delivered while the fan-out's last slice was being written found
    nothing open, the slice committed (rows and fanned_out_at together), and the mark then saw
    the broadcast fanned out: it was called sent with its last slice still to deliver. On
    SQLite, where the mark waited for the slice's write lock, bench/fanout.py caught it in
    2 of 20 broadcasts.
    """
    still_open = Delivery.objects.filter(broadcast_id=OuterRef("pk"), status__in=OPEN_STATUSES)
    return bool(
        Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.SENDING, fanned_out_at__isnull=False)
        .exclude(Exists(still_open))
        .update(status=BroadcastStatus.SENT, finished_at=timezone.now())
    )

"""Delivery of one chunk of a broadcast over SMTP (S2, P4).

A chunk's open rows are claimed with one conditional UPDATE, so two workers given the same
chunk never send the same row. Several SMTP connections then send in parallel, each reused
for many messages, while this thread records the outcomes in small batches. A mail the relay
accepted is recorded within FLUSH_SECONDS or FLUSH_ROWS; only those in flight or not yet
recorded when a worker is killed can be sent a second time, when the claim's lease runs out
(see sweep.py). While it works, the task renews its lease.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
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
from mimamori.mail import bounces, signing, verp
from mimamori.mail.smtp import Outcome, Reply, SmtpSession, retry_delay
from mimamori.registry import health
from mimamori.registry.models import School

log = logging.getLogger(__name__)

FLUSH_ROWS = 20
FLUSH_SECONDS = 0.2
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


def deliver_chunk(broadcast_id: int, chunk: int) -> int:
    """Send the chunk's pending and due deferred mails; return how many were offered."""
    claim = uuid.uuid4()
    claimed = _claim(broadcast_id, chunk, claim)
    if claimed:
        broadcast = Broadcast.objects.get(pk=broadcast_id)
        _send_claimed(broadcast, claim, _mails(broadcast_id, claimed))
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
    return sorted(mails.values(), key=lambda mail: mail.email)


def _send_claimed(broadcast: Broadcast, claim: uuid.UUID, rows: list[Mail]) -> None:
    work: queue.Queue[Mail] = queue.Queue()
    for row in rows:
        work.put(row)
    results: queue.Queue[Attempt] = queue.Queue()
    # One builder for the chunk: it learns each school's header block once (see BroadcastMail).
    mails = broadcast_mails.BroadcastMail(
        subject=broadcast.subject, body=broadcast.body, urgent=broadcast.urgent
    )
    # Broadcasts offer one-click unsubscribe where the municipality does; maintenance notices,
    # which every address must get, never.
    unsubscribe = broadcast.kind != BroadcastKind.MAINTENANCE
    # Each mail domain's DKIM signer (None: no key), read here, where the database may be used.
    signers = {
        domain: signing.signer_for(domain) for domain in {r.school.municipality.mail_domain for r in rows}
    }
    senders = [
        threading.Thread(target=_sender, args=(mails, work, results, unsubscribe, signers), daemon=True)
        for _ in range(min(settings.MIMAMORI_SMTP_CONNECTIONS, len(rows)))
    ]
    for sender in senders:
        sender.start()
    try:
        _record_as_they_come(claim, [row.pk for row in rows], results, senders)
    except BaseException:
        # Outcomes can no longer be recorded (the database went away): let the senders stop
        # after the mail in hand, as no more should go out unrecorded; the lease hands the
        # rest of the claim back (sweep.py).
        _drain(work)
        raise


def _drain(work: queue.Queue[Mail]) -> None:
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


def _sender(
    mails: broadcast_mails.BroadcastMail,
    work: queue.Queue[Mail],
    results: queue.Queue[Attempt],
    unsubscribe: bool,
    signers: dict[str, signing.Signer | None],
) -> None:
    with SmtpSession() as session:
        while True:
            try:
                row = work.get_nowait()
            except queue.Empty:
                return
            try:
                content = mails.as_bytes(
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
                )
                # Signed last, over the final bytes (RSA in OpenSSL, which lets the other
                # connections' threads run meanwhile).
                signer = signers[row.school.municipality.mail_domain]
                if signer is not None:
                    content = signer.sign(content)
            except Exception as error:
                # A bug must not strand the row in "sending": record it and retry later.
                log.exception("could not build the mail for delivery %s", row.pk)
                reply = Reply(Outcome.TEMPORARY, f"internal error: {error}"[:500])
            else:
                # Its own envelope sender, so that a bounce coming back later names this mail.
                sender = verp.envelope_sender(verp.DELIVERY, row.pk, row.school.municipality.mail_domain)
                reply = session.send(sender, row.email, content)
            results.put(Attempt(row, reply, timezone.now()))


def _record_as_they_come(
    claim: uuid.UUID, ids: list[int], results: queue.Queue[Attempt], senders: list[threading.Thread]
) -> None:
    batch: list[Attempt] = []
    last_flush = last_heartbeat = time.monotonic()
    lease = settings.MIMAMORI_DELIVERY_LEASE_SECONDS
    while True:
        try:
            batch.append(results.get(timeout=FLUSH_SECONDS))
        except queue.Empty:
            if not any(sender.is_alive() for sender in senders) and results.empty():
                break
        moment = time.monotonic()
        if len(batch) >= FLUSH_ROWS or (batch and moment - last_flush >= FLUSH_SECONDS):
            _record(batch)
            batch = []
            last_flush = moment
        if moment - last_heartbeat >= lease / 3:
            Delivery.objects.filter(pk__in=ids, claim=claim, status=DeliveryStatus.SENDING).update(
                claimed_at=timezone.now()
            )
            last_heartbeat = moment
    if batch:
        _record(batch)


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

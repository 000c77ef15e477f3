"""Recording a read confirmation (S5): the verb behind the 「確認しました」 button.

A mail's link carries an opaque random token (made by broadcasts/fanout.py, put in the mail
by broadcasts/mails.py). Only a POST reaches record_confirmation; the GET page merely shows the
message, because mail scanners open every link. A registrant is confirmed by the first
confirmation from any of its mails (slot 1 or 2, or a shared sibling address, which confirms
every child it names); later ones change nothing.

A broadcast that offers answer choices (B1) is never confirmed bare: its confirmation is an
answer per child (receipts/answering.py), so both paths here find its link but record nothing
and say ANSWER_NEEDED, and the page asks for a choice instead.
"""

from __future__ import annotations

import enum
import functools
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import ProgrammingError, connection, models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from psycopg import errors

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery, Recipient
from mimamori.receipts.models import Receipt

TOKEN_ALPHABET = frozenset("0123456789abcdef")


class Outcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"
    ANSWER_NEEDED = "answer needed"  # the broadcast asks a choice per child: nothing recorded


class LinkExpired(Exception):
    pass


@dataclass(frozen=True)
class Link:
    """What recording a confirmation needs to know about the mail a token belongs to."""

    delivery_id: int
    broadcast_id: int
    sent_at: datetime
    choices: int = 0  # how many answer choices the broadcast offers (0: a bare confirmation)

    @classmethod
    def of(cls, delivery: Delivery) -> Link:
        broadcast = delivery.broadcast
        return cls(
            delivery.pk,
            delivery.broadcast_id,
            broadcast.send_requested_at or broadcast.created_at,
            len(broadcast.answers),
        )

    @property
    def expires_at(self) -> datetime:
        return self.sent_at + timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)


def _well_formed(token: str) -> bool:
    return 40 <= len(token) <= 64 and set(token) <= TOKEN_ALPHABET


def find_link(token: str) -> Link | None:
    """The mail a link belongs to, as just what a POST needs, or None (a 404).

    This is the first statement of the request a whole city sends within minutes of an
    emergency mail: three values through the token's unique index, without building the
    broadcast, school and municipality that find_delivery() loads for the page.
    """
    if not _well_formed(token):
        return None
    length = "jsonb_array_length" if connection.vendor == "postgresql" else "json_array_length"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, d.broadcast_id, COALESCE(b.send_requested_at, b.created_at),"  # noqa: S608
            f" {length}(b.answers) FROM {quoted_table(Delivery)} d"
            f" JOIN {quoted_table(Broadcast)} b ON b.id = d.broadcast_id"
            " WHERE d.confirmation_token = %s AND b.request_confirmation",
            [token],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    delivery_id, broadcast_id, sent_at, choices = row
    if not isinstance(sent_at, datetime):  # SQLite hands back the stored UTC text
        sent_at = datetime.fromisoformat(sent_at).replace(tzinfo=UTC)
    return Link(delivery_id, broadcast_id, sent_at, choices or 0)


def find_delivery(token: str) -> Delivery | None:
    """The mail a link belongs to, or None for unknown or malformed tokens (a 404)."""
    if not _well_formed(token):
        return None
    try:
        # get(), not first(): first() adds ORDER BY id, which can make PostgreSQL walk the
        # primary key instead of the token's unique index (7 ms instead of 0.1 ms a request).
        return Delivery.objects.select_related("broadcast", "school__municipality").get(
            confirmation_token=token, broadcast__request_confirmation=True
        )
    except Delivery.DoesNotExist:
        return None


def is_expired(mail: Delivery | Link) -> bool:
    link = mail if isinstance(mail, Link) else Link.of(mail)
    return timezone.now() >= link.expires_at


def is_confirmed(delivery: Delivery) -> bool:
    """Whether every registrant the mail names has confirmed, through this mail or another."""
    receipt = Receipt.objects.filter(
        broadcast_id=delivery.broadcast_id, registrant_id=OuterRef("registrant_id")
    )
    return not Recipient.objects.filter(delivery=delivery).exclude(Exists(receipt)).exists()


def confirm_link(token: str) -> Outcome | None:
    """Record the confirmation the 「確認しました」 button sends for the mail a link belongs to;
    durable on return. None when the token is unknown or its link has expired.

    This is the request a whole city sends within minutes of an emergency mail. Whatever the
    number of children the mail names, ON CONFLICT keeps a sibling confirmed already from
    undoing the others, and RETURNING says whom this POST confirmed, so each group's counter
    grows by exactly the receipts inserted.

    ANSWER_NEEDED, recording nothing, for a broadcast that asks an answer per child: a bare
    「確認しました」 there would count the children confirmed without telling the school how they are.
    """
    if not _well_formed(token):
        return None
    if connection.vendor == "postgresql":
        return _confirm_in_one_statement(token)
    link = find_link(token)
    if link is None or is_expired(link):
        return None
    if link.choices:
        return Outcome.ANSWER_NEEDED
    return _record(link)


def record_confirmation(delivery: Delivery) -> Outcome:
    """confirm_link() for a caller that holds the mail; LinkExpired once its link has run out."""
    if is_expired(delivery):
        raise LinkExpired
    outcome = confirm_link(delivery.confirmation_token or "")
    if outcome is None:
        raise LinkExpired  # ran out a moment ago
    return outcome


@functools.cache  # built once: its text is needed only when a connection prepares it
def _confirm_sql() -> str:
    """One round trip, and so one short transaction holding each class counter's row lock:
    bench/confirmations.py measured 8 round trips a confirmation at first (a savepoint per
    child), 6 with the statements below, 1 this way. Data-modifying CTEs all run, to the
    end, on one snapshot. Only table names from our own models are formatted in. Parameters:
    $1 the token, $2 the oldest sending time whose links still work, $3 now. A broadcast with
    answer choices is found (the third value says so) but nothing is inserted for it."""
    return f"""
        WITH link AS (
            SELECT d.id, d.broadcast_id, b.answers = '[]'::jsonb AS bare FROM {quoted_table(Delivery)} d
            JOIN {quoted_table(Broadcast)} b ON b.id = d.broadcast_id
            WHERE d.confirmation_token = $1 AND b.request_confirmation
              AND COALESCE(b.send_requested_at, b.created_at) > $2
        ), inserted AS (
            INSERT INTO {quoted_table(Receipt)} (broadcast_id, registrant_id, delivery_id, confirmed_at)
            SELECT link.broadcast_id, r.registrant_id, link.id, $3
            FROM link JOIN {quoted_table(Recipient)} r ON r.delivery_id = link.id
            WHERE link.bare
            ON CONFLICT (broadcast_id, registrant_id) DO NOTHING
            RETURNING registrant_id
        ), counted AS (
            UPDATE {quoted_table(AudienceGroup)} g SET confirmed = g.confirmed + c.n
            FROM (
                SELECT r.group_id, COUNT(*) AS n
                FROM {quoted_table(Recipient)} r JOIN link ON r.delivery_id = link.id
                WHERE r.registrant_id IN (SELECT registrant_id FROM inserted)
                GROUP BY r.group_id
            ) c
            WHERE g.id = c.group_id
        )
        SELECT (SELECT COUNT(*) FROM link), (SELECT COUNT(*) FROM inserted), (SELECT bool_and(bare) FROM link)
    """  # noqa: S608


# The database connections (of this process) on which each statement is prepared: planning
# the confirmation's took 0.48 ms of PostgreSQL's 0.9 ms a confirmation, executing it 0.2 ms
# (docs/performance.md), so each connection plans it once. A prepared statement lives in the
# server session; a pooler that hands one client's transactions to different sessions
# (PgBouncer's transaction pooling) is met by preparing again and, failing that, planning.
_PREPARED_ON: dict[str, weakref.WeakSet[Any]] = {}


def execute_prepared(name: str, types: str, sql: str, values: Sequence[str | datetime]) -> tuple[Any, ...]:
    """The one row of ``sql`` (parameters $1 … $n of ``types``) run as the prepared statement
    ``name`` of this connection's session, prepared on first use (PostgreSQL only)."""
    prepared_on = _PREPARED_ON.setdefault(name, weakref.WeakSet())
    marks = ", ".join(["%s"] * len(values))
    with connection.cursor() as cursor:
        session = connection.connection
        try:
            if session not in prepared_on:
                cursor.execute(f"PREPARE {name} ({types}) AS {sql}")
                prepared_on.add(session)
            cursor.execute(f"EXECUTE {name} ({marks})", values)
        except ProgrammingError as error:
            if connection.in_atomic_block or not isinstance(
                error.__cause__, errors.InvalidSqlStatementName | errors.DuplicatePreparedStatement
            ):
                raise
            # Not this session's statement after all (a pooler between us and the server).
            prepared_on.discard(session)
            cursor.execute(re.sub(r"\$(\d+)", r"%(p\1)s", sql), {f"p{n}": v for n, v in enumerate(values, 1)})
        row: tuple[Any, ...] = cursor.fetchone()
    return row


def _confirm_in_one_statement(token: str) -> Outcome | None:
    oldest = timezone.now() - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)
    found, inserted, bare = execute_prepared(
        "mimamori_confirm", "text, timestamptz, timestamptz", _confirm_sql(), [token, oldest, timezone.now()]
    )
    if not found:
        return None
    if not bare:
        return Outcome.ANSWER_NEEDED
    return Outcome.CONFIRMED if inserted else Outcome.ALREADY


def _record(link: Link) -> Outcome:
    # The same in two statements and one transaction (SQLite has no data-modifying CTEs).
    receipt = quoted_table(Receipt)
    recipient = quoted_table(Recipient)
    group = quoted_table(AudienceGroup)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {receipt} (broadcast_id, registrant_id, delivery_id, confirmed_at)"  # noqa: S608
            f" SELECT %s, r.registrant_id, %s, %s FROM {recipient} r WHERE r.delivery_id = %s"
            " ON CONFLICT (broadcast_id, registrant_id) DO NOTHING RETURNING registrant_id",
            [link.broadcast_id, link.delivery_id, now, link.delivery_id],
        )
        confirmed = [row[0] for row in cursor.fetchall()]
        if confirmed:
            marks = ", ".join(["%s"] * len(confirmed))
            cursor.execute(
                f"UPDATE {group} SET confirmed = confirmed + (SELECT COUNT(*) FROM {recipient} r"  # noqa: S608
                f" WHERE r.delivery_id = %s AND r.group_id = {group}.id AND r.registrant_id IN ({marks}))"
                f" WHERE id IN (SELECT r.group_id FROM {recipient} r"
                f" WHERE r.delivery_id = %s AND r.registrant_id IN ({marks}))",
                [link.delivery_id, *confirmed, link.delivery_id, *confirmed],
            )
    return Outcome.CONFIRMED if confirmed else Outcome.ALREADY


def quoted_table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)

"""Fan-out: a broadcast becomes one delivery row per address, grouped into chunks.

The audience is written by INSERT … SELECT statements: rows are created in the database in
batches, never one commit per recipient, and the audience never passes through this process's
memory, however large it is. Merging (B5) happens in the same statements: one delivery per
address, naming every registrant whose slot holds it.

The first slice is the **head**, chunk 0: the first addresses of every school of the audience
in turn (each school's first, then each one's second, …) until it holds CHUNK_SIZE, and one
of every school at least. Rosters are imported per school and addresses are not spread over
schools at random (a school's rows often share a pattern), so in plain address order the
first chunks of a city-wide broadcast may all be one school's, and the last school's first
mail waits for most of the city's: when a quake fires every school together, each school's
guardians should be among the first mailed (issue 15; docs/performance.md, fairness). For a
broadcast to one school the head is simply its first CHUNK_SIZE addresses. Choosing the head
reads the whole audience once (a window over the merged addresses); every later slice still
reads only past a position through the address index.

The rest is written in address order, one slice per task, each slice in a transaction that
also queues the chunks it wrote: each later slice is as large as everything written before
it (SLICE_CHUNKS at least, MAX_SLICE_CHUNKS at most), so the audience is read a few times,
not once per ten thousand addresses, and every slice is written while the chunks of the one
before are being delivered. A slice is a task of its own, queued among the previous slice's
chunks (lanes.queue_fan_out), so no worker is held by a whole fan-out: with one worker,
delivery and writing take turns; with more, they overlap. Each slice reads the audience only
past the last address written after the head (the position), through the address index,
leaving out the addresses already written (the head's, which lie anywhere in address order),
so a crash leaves whole chunks with their work queued, and the fan-out run again carries on
after the position. When the audience is exhausted, a last pass writes any address that is
still missing (one changed, during the fan-out, to an address before the position reached),
the class counters are set from the recipients and the broadcast is marked fanned out. (The
counters are first filled from the whole audience right after the first chunk, so that the
statistics are right while the rest is being written.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from mimamori.broadcasts import lanes
from mimamori.broadcasts.models import (
    AudienceGroup,
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryStatus,
    Recipient,
)
from mimamori.broadcasts.targeting import audience, suppressed_count
from mimamori.registry.models import Address, Registrant

log = logging.getLogger(__name__)

CHUNK_SIZE = 500
SLICE_CHUNKS = 20
MAX_SLICE_CHUNKS = 160


@dataclass(frozen=True)
class Position:
    """How far a fan-out has got: the last address written after the head (chunk 0) and the
    next chunk's number (0: the head is still to be written)."""

    after: str
    next_chunk: int

    def slice_addresses(self) -> int:
        if self.next_chunk == 0:
            return CHUNK_SIZE
        return CHUNK_SIZE * min(max(SLICE_CHUNKS, self.next_chunk), MAX_SLICE_CHUNKS)


def fan_out(broadcast_id: int, next_chunk: int | None = None) -> int:
    """Write the next slice of a sending broadcast's deliveries and queue its chunks and the
    task for the slice after it; when the audience is exhausted, finish the broadcast. Return
    how many deliveries the slice wrote (0 once there is nothing left to write).

    ``next_chunk`` is where the task expects the fan-out to be; a task that finds it elsewhere
    (a twin the sweep queued has overtaken it) does nothing, so one chain of slices remains.
    """
    if next_chunk in (None, 0):
        _plan_with_fresh_statistics()
    with transaction.atomic():
        broadcast = _sending(broadcast_id)
        if broadcast is None:
            return 0
        position = _position(broadcast)
        if next_chunk is not None and next_chunk != position.next_chunk:
            return 0
        limit = position.slice_addresses()
        # A slice that wrote fewer addresses than it could found the audience exhausted (the head
        # holds CHUNK_SIZE addresses at least, unless the audience has fewer).
        written = _write_slice(broadcast, position, limit, more=True)
        finished = written < limit
        if finished:
            messages = _finish(broadcast)
    if finished:
        _refresh_statistics()
        log.info("broadcast %s fanned out: %s messages", broadcast_id, messages)
    return written


def _sending(broadcast_id: int) -> Broadcast | None:
    """The broadcast, locked, if it still waits for (the rest of) its fan-out."""
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
    if broadcast.status != BroadcastStatus.SENDING or broadcast.fanned_out_at is not None:
        return None
    return broadcast


def _position(broadcast: Broadcast) -> Position:
    # After the head, slices are written in address order, so the last address is in the last
    # chunk: one step back along the (broadcast, address) index, passing over the head's rows
    # that lie beyond it (CHUNK_SIZE, or one a school, at most). (Only the final pass, which
    # ends the fan-out, writes addresses behind the position.)
    written = Delivery.objects.filter(broadcast=broadcast)
    last = (
        written.filter(chunk__gt=0)
        .annotate(key=Lower("email"))
        .order_by("-key")
        .values_list("key", "chunk")
        .first()
    )
    if last is not None:
        return Position(last[0], last[1] + 1)
    return Position("", 1 if written.exists() else 0)


def _write_slice(broadcast: Broadcast, position: Position, addresses: int | None, more: bool = False) -> int:
    """Write the head (position.next_chunk 0), the next `addresses` addresses after `position`,
    or (None) every address still missing, and queue their chunks; if the slice is full and
    `more`, the next slice too."""
    first_chunk = position.next_chunk
    count = _insert_deliveries(broadcast, after=position.after, addresses=addresses, first_chunk=first_chunk)
    if not count:
        return 0
    # Working, not lost: the sweep queues a fan-out again only when none progressed for a lease.
    Broadcast.objects.filter(pk=broadcast.pk).update(fan_out_queued_at=timezone.now())
    if first_chunk == 1:
        # The first chunk is out: now give every class its number of registrants, so that the
        # statistics are right while the rest is written (the end recounts from the recipients).
        _count_groups(broadcast)
    written_here = f"SELECT LOWER(email) FROM {_table(Delivery)} WHERE broadcast_id = %s AND chunk >= %s"  # noqa: S608
    if addresses is None or first_chunk == 0:
        # What this statement's slice wrote: the head, or the last pass's stragglers.
        where = f"audience.address_key IN ({written_here})"
        bounds: tuple[Any, ...] = (broadcast.pk, first_chunk)
    else:
        # The range keeps the walk along the address index; the head's addresses in it were
        # written (with their recipients) by the first slice.
        last = _position(broadcast).after
        where = f"""audience.address_key > %s AND audience.address_key <= %s AND EXISTS (
            {written_here} AND LOWER(email) = audience.address_key)"""
        bounds = (position.after, last, broadcast.pk, first_chunk)
    _insert_groups(broadcast, where, bounds)
    _insert_recipients(broadcast, where, bounds)
    # The head is one chunk, however many schools it names.
    head = first_chunk == 0 and addresses is not None
    chunks = range(0, 1) if head else range(first_chunk, first_chunk + (count + CHUNK_SIZE - 1) // CHUNK_SIZE)
    halfway = first_chunk + len(chunks) // 2
    for chunk in chunks:
        lanes.queue_chunk(broadcast, chunk)
        if more and addresses is not None and count >= addresses and chunk == halfway:
            # Half-way through this slice's chunks in its lane: the next slice is written while
            # the other half is being delivered.
            lanes.queue_fan_out(broadcast, next_chunk=chunks.stop, beside_chunk=chunk)
    if first_chunk == 0:
        # Before the next slice, and the chunks, read them (see _refresh_statistics).
        transaction.on_commit(_refresh_statistics)
    return count


def _finish(broadcast: Broadcast) -> int:
    """Every address is written: write any the slices passed by, count the classes'
    registrants and mark the broadcast."""
    _write_slice(broadcast, _position(broadcast), None)
    AudienceGroup.objects.filter(broadcast=broadcast).update(
        registrants=Coalesce(
            Subquery(
                Recipient.objects.filter(group=OuterRef("pk"))
                .values("group")
                .annotate(n=Count("registrant", distinct=True))
                .values("n")
            ),
            0,
        )
    )
    broadcast.fanned_out_at = timezone.now()
    broadcast.message_count = messages = Delivery.objects.filter(broadcast=broadcast).count()
    broadcast.registrant_count = (
        AudienceGroup.objects.filter(broadcast=broadcast).aggregate(n=Sum("registrants"))["n"] or 0
    )
    broadcast.suppressed_count = suppressed_count(broadcast)
    if messages == 0:
        broadcast.status = BroadcastStatus.SENT
        broadcast.finished_at = broadcast.fanned_out_at
    broadcast.save(
        update_fields=[
            "message_count",
            "registrant_count",
            "suppressed_count",
            "fanned_out_at",
            "status",
            "finished_at",
        ]
    )
    return messages


def _plan_with_fresh_statistics() -> None:
    """Analyze the registry tables first if their statistics describe another table.

    A roster import writes thousands of registrants in one transaction, and autovacuum may
    ANALYZE the tables meanwhile, while those rows are invisible to it; a restored dump has no
    statistics at all. Planned with such numbers (a table of one row), each slice of the
    fan-out reads the whole audience in a nested loop (docs/performance.md: 421 ms instead of
    24 ms a slice at 100,000). More rows changed since the last ANALYZE than the table had
    then is the sign; autovacuum itself re-analyzes after 10 %, so this rarely fires.
    """
    if connection.vendor != "postgresql":
        return
    tables = [m._meta.db_table for m in (Address, Registrant)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
            " WHERE s.relname = ANY(%s) AND s.n_mod_since_analyze > GREATEST(1000, c.reltuples)",
            [tables],
        )
        stale = [row[0] for row in cursor.fetchall()]
        if stale:
            log.info("analyzing %s before the fan-out: statistics out of date", ", ".join(stale))
            cursor.execute(f"ANALYZE {', '.join(connection.ops.quote_name(t) for t in stale)}")


def _refresh_statistics() -> None:
    """Let PostgreSQL's planner know the rows just written before the chunks read them.

    Autovacuum analyzes the tables a minute or so later; until then a table that never had
    many rows has no useful statistics, and a chunk's lookup of its 500 rows by key is planned
    as a scan of them all. ANALYZE reads a sample of fixed size, so this costs about the same
    for a thousand rows as for a million.
    """
    if connection.vendor != "postgresql":
        return
    tables = ", ".join(
        connection.ops.quote_name(m._meta.db_table) for m in (Delivery, Recipient, AudienceGroup)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {tables}")


def _audience_sql(broadcast: Broadcast) -> tuple[str, tuple[Any, ...]]:
    rows = (
        audience(broadcast)
        .order_by()
        .annotate(
            address_key=Lower("email"),
            sender_school=F("registrant__school_id"),
            grade=F("registrant__grade"),
            class_name=F("registrant__class_name"),
        )
        .values("registrant_id", "slot", "email", "address_key", "sender_school", "grade", "class_name")
    )
    sql, params = rows.query.sql_with_params()
    return sql, tuple(params)


def _confirmation_token_sql(broadcast: Broadcast) -> str:
    """A fresh random token per row, made by the database's CSPRNG, or NULL.

    PostgreSQL's gen_random_uuid() draws 122 random bits from pg_strong_random(); two of them
    give 244. SQLite's randomblob() comes from its ChaCha20 generator seeded by the OS.
    """
    if not broadcast.request_confirmation:
        return "NULL"
    if connection.vendor == "postgresql":
        return "REPLACE(gen_random_uuid()::text || gen_random_uuid()::text, '-', '')"
    return "LOWER(HEX(RANDOMBLOB(30)))"


def _table(model: type[Delivery | Recipient | AudienceGroup]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _insert_deliveries(broadcast: Broadcast, *, after: str, addresses: int | None, first_chunk: int) -> int:
    """One row per address, numbered into chunks from `first_chunk` on in address order: the
    next `addresses` addresses after `after` not yet written, or (None) every address not yet
    written; or, at chunk 0, the head (_insert_head)."""
    if first_chunk == 0 and addresses is not None:
        return _insert_head(broadcast, addresses)
    audience_sql, params = _audience_sql(broadcast)
    table = _table(Delivery)
    token = _confirmation_token_sql(broadcast)
    # Probed per address through the (broadcast, address) index, as the INSERT's own unique
    # check is: the head's addresses lie anywhere past the position.
    not_written = f"""NOT EXISTS (
        SELECT 1 FROM {table} written
        WHERE written.broadcast_id = %s AND LOWER(written.email) = audience.address_key)"""  # noqa: S608
    if addresses is None:
        where = not_written
        bounds: tuple[Any, ...] = (broadcast.pk,)
    else:
        where = f"audience.address_key > %s AND {not_written}"
        bounds = (after, broadcast.pk)
    # The sender is the lowest-numbered school among the children the address is for.
    sql = f"""
        INSERT INTO {table}
            (broadcast_id, chunk, email, school_id, status, attempts, next_attempt_at, reply,
             confirmation_token)
        SELECT %s, %s + (ROW_NUMBER() OVER (ORDER BY merged.address_key) - 1) / %s,
               merged.email, merged.sender_school, %s, 0, %s, '', {token}
        FROM (
            SELECT audience.address_key, MIN(audience.email) AS email,
                   MIN(audience.sender_school) AS sender_school
            FROM ({audience_sql}) audience
            WHERE {where}
            GROUP BY audience.address_key
            ORDER BY audience.address_key
            {"" if addresses is None else f"LIMIT {int(addresses)}"}
        ) merged
    """  # noqa: S608 - table names from the models, values as parameters
    due = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            sql, (broadcast.pk, first_chunk, CHUNK_SIZE, DeliveryStatus.PENDING, due, *params, *bounds)
        )
        return cursor.rowcount


def _insert_head(broadcast: Broadcast, addresses: int) -> int:
    """Chunk 0: the head (head_sql)."""
    select, params = head_sql(broadcast, addresses)
    token = _confirmation_token_sql(broadcast)
    sql = f"""
        INSERT INTO {_table(Delivery)}
            (broadcast_id, chunk, email, school_id, status, attempts, next_attempt_at, reply,
             confirmation_token)
        SELECT %s, 0, head.email, head.sender_school, %s, 0, %s, '', {token}
        FROM ({select}) head
    """  # noqa: S608 - table names from the models, values as parameters
    due = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, DeliveryStatus.PENDING, due, *params))
        return cursor.rowcount


def head_sql(broadcast: Broadcast, addresses: int) -> tuple[str, tuple[Any, ...]]:
    """The head's addresses (address_key, email, sender_school): each school's first address,
    then each one's second, and so on, until it holds `addresses` (and one of every school at
    least), each address under its sending school (the lowest-numbered of the children it is
    for, as for every delivery). Reads the whole audience once (bench/plans.py times it)."""
    audience_sql, params = _audience_sql(broadcast)
    # `place` is an address's rank in its school, `turn` its rank in the head's order; a place
    # past `addresses` can never come in (its turn would be past it too), so those rows are
    # left out before the second sort.
    sql = f"""
        SELECT turned.address_key, turned.email, turned.sender_school
        FROM (
            SELECT placed.address_key, placed.email, placed.sender_school, placed.place,
                   ROW_NUMBER() OVER (ORDER BY placed.place, placed.address_key) AS turn
            FROM (
                SELECT merged.address_key, merged.email, merged.sender_school,
                       ROW_NUMBER() OVER (
                           PARTITION BY merged.sender_school ORDER BY merged.address_key) AS place
                FROM (
                    SELECT audience.address_key, MIN(audience.email) AS email,
                           MIN(audience.sender_school) AS sender_school
                    FROM ({audience_sql}) audience
                    GROUP BY audience.address_key
                ) merged
            ) placed
            WHERE placed.place <= %s
        ) turned
        WHERE turned.place = 1 OR turned.turn <= %s
    """  # noqa: S608 - the audience from the ORM, values as parameters
    return sql, (*params, int(addresses), int(addresses))


# The answer counters a class row starts with (a model default is no column default).
_ANSWERS = ", ".join(AudienceGroup.ANSWER_FIELDS)
_NO_ANSWERS = ", ".join("0" for _ in AudienceGroup.ANSWER_FIELDS)


def _insert_groups(broadcast: Broadcast, where: str, bounds: tuple[Any, ...]) -> None:
    """The classes of the audience rows `where` selects that are not there yet. How many
    registrants each has is counted once the first chunk is out (_count_groups) and again,
    exactly, when the fan-out ends (_finish)."""
    audience_sql, params = _audience_sql(broadcast)
    sql = f"""
        INSERT INTO {_table(AudienceGroup)}
            (broadcast_id, school_id, grade, class_name, registrants, confirmed, {_ANSWERS})
        SELECT %s, audience.sender_school, audience.grade, audience.class_name, 0, 0, {_NO_ANSWERS}
        FROM ({audience_sql}) audience
        WHERE {where}
        GROUP BY audience.sender_school, audience.grade, audience.class_name
        ON CONFLICT (broadcast_id, school_id, grade, class_name) DO NOTHING
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, *params, *bounds))


def _count_groups(broadcast: Broadcast) -> None:
    """Every class of the audience with its number of registrants."""
    audience_sql, params = _audience_sql(broadcast)
    sql = f"""
        INSERT INTO {_table(AudienceGroup)}
            (broadcast_id, school_id, grade, class_name, registrants, confirmed, {_ANSWERS})
        SELECT %s, audience.sender_school, audience.grade, audience.class_name,
               COUNT(DISTINCT audience.registrant_id), 0, {_NO_ANSWERS}
        FROM ({audience_sql}) audience
        GROUP BY audience.sender_school, audience.grade, audience.class_name
        ON CONFLICT (broadcast_id, school_id, grade, class_name)
        DO UPDATE SET registrants = EXCLUDED.registrants
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, *params))


def _insert_recipients(broadcast: Broadcast, where: str, bounds: tuple[Any, ...]) -> None:
    """The registrants the deliveries of the audience rows `where` selects are sent for."""
    audience_sql, params = _audience_sql(broadcast)
    # An address in slots 1 and 2 of one child names the child once, at the lower slot. The
    # delivery and the group are found per row through their unique indexes: a join would
    # let the planner, which has no statistics yet for rows this transaction just wrote, pick
    # a nested loop over the whole slice for every delivery.
    sql = f"""
        INSERT INTO {_table(Recipient)} (broadcast_id, delivery_id, registrant_id, slot, group_id)
        SELECT %s,
               (SELECT delivery.id FROM {_table(Delivery)} delivery
                WHERE delivery.broadcast_id = %s AND LOWER(delivery.email) = grouped.address_key),
               grouped.registrant_id, grouped.slot,
               (SELECT audience_group.id FROM {_table(AudienceGroup)} audience_group
                WHERE audience_group.broadcast_id = %s AND audience_group.school_id = grouped.school
                  AND audience_group.grade = grouped.grade
                  AND audience_group.class_name = grouped.class_name)
        FROM (
            SELECT audience.address_key, audience.registrant_id, MIN(audience.slot) AS slot,
                   MIN(audience.sender_school) AS school, MIN(audience.grade) AS grade,
                   MIN(audience.class_name) AS class_name
            FROM ({audience_sql}) audience
            WHERE {where}
            GROUP BY audience.address_key, audience.registrant_id
        ) grouped
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, broadcast.pk, broadcast.pk, *params, *bounds))

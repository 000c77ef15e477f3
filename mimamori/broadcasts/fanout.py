"""Fan-out: a broadcast becomes one delivery row per address, grouped into chunks.

The audience is written by INSERT … SELECT statements: rows are created in the database in
batches, never one commit per recipient, and the audience never passes through this process's
memory, however large it is. Merging (B5) happens in the same statements: one delivery per
address, naming every registrant whose slot holds it.

The addresses are written in address order, a slice per transaction: the first slice is one
chunk, so the first mails leave within moments of "send" whatever the audience's size, and
the later slices (SLICE_CHUNKS chunks each) are written while workers deliver the earlier ones.
Each slice reads the audience only past the last address already written, through the
address index, so a slice costs the same however far the fan-out has got. Each transaction
queues the tasks of the chunks it wrote, so a crash leaves whole chunks with their work
queued, and running the fan-out again carries on after the last address written. When a
slice finds nothing more, a last pass writes any address of the audience that is still
missing (one changed, during the fan-out, to an address before the position reached), the
class counters are set from the recipients and the broadcast is marked fanned out. (The
counters are first filled from the whole audience right after the first chunk, so that the
statistics are right while the rest is being written.)
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Max, OuterRef, Subquery, Sum
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
from mimamori.broadcasts.targeting import audience

log = logging.getLogger(__name__)

CHUNK_SIZE = 500
SLICE_CHUNKS = 20


def fan_out(broadcast_id: int) -> int:
    """Create the deliveries of a broadcast that is sending; return how many. Idempotent."""
    addresses = CHUNK_SIZE
    while True:
        with transaction.atomic():
            broadcast = _sending(broadcast_id)
            if broadcast is None:
                return 0
            if not _write_slice(broadcast, addresses):
                messages = _finish(broadcast)
                break
        addresses = CHUNK_SIZE * SLICE_CHUNKS
    _refresh_statistics()
    log.info("broadcast %s fanned out: %s messages", broadcast_id, messages)
    return messages


def _sending(broadcast_id: int) -> Broadcast | None:
    """The broadcast, locked, if it still waits for (the rest of) its fan-out."""
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
    if broadcast.status != BroadcastStatus.SENDING or broadcast.fanned_out_at is not None:
        return None
    return broadcast


def _write_slice(broadcast: Broadcast, addresses: int | None) -> int:
    """Write the next `addresses` addresses after those already written, or (None) every
    address still missing, and queue their chunks."""
    written = Delivery.objects.filter(broadcast=broadcast)
    progress = written.aggregate(last=Max(Lower("email")), chunk=Max("chunk"))
    after = progress["last"] or ""
    first_chunk = 0 if progress["chunk"] is None else progress["chunk"] + 1
    count = _insert_deliveries(broadcast, after=after, addresses=addresses, first_chunk=first_chunk)
    if not count:
        return 0
    # Working, not lost: the sweep queues a fan-out again only when none progressed for a lease.
    Broadcast.objects.filter(pk=broadcast.pk).update(fan_out_queued_at=timezone.now())
    if first_chunk == 1:
        # The first chunk is out: now give every class its number of registrants, so that the
        # statistics are right while the rest is written (the end recounts from the recipients).
        _count_groups(broadcast)
    if addresses is None:
        written_here = f"SELECT LOWER(email) FROM {_table(Delivery)} WHERE broadcast_id = %s AND chunk >= %s"  # noqa: S608
        where = f"audience.address_key IN ({written_here})"
        bounds: tuple[Any, ...] = (broadcast.pk, first_chunk)
    else:
        where = "audience.address_key > %s AND audience.address_key <= %s"
        bounds = (after, written.aggregate(last=Max(Lower("email")))["last"])
    _insert_groups(broadcast, where, bounds)
    _insert_recipients(broadcast, where, bounds)
    for chunk in range(first_chunk, first_chunk + (count + CHUNK_SIZE - 1) // CHUNK_SIZE):
        lanes.queue_chunk(broadcast, chunk)
    if first_chunk == 0:
        # Before the next slice, and the chunks, read them (see _refresh_statistics).
        transaction.on_commit(_refresh_statistics)
    return count


def _finish(broadcast: Broadcast) -> int:
    """Every address is written: write any the slices passed by, count the classes'
    registrants and mark the broadcast."""
    _write_slice(broadcast, None)
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
    if messages == 0:
        broadcast.status = BroadcastStatus.SENT
        broadcast.finished_at = broadcast.fanned_out_at
    broadcast.save(
        update_fields=["message_count", "registrant_count", "fanned_out_at", "status", "finished_at"]
    )
    return messages


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
    next `addresses` addresses after `after`, or (None) every address not yet written."""
    audience_sql, params = _audience_sql(broadcast)
    table = _table(Delivery)
    token = _confirmation_token_sql(broadcast)
    if addresses is None:
        where = f"""NOT EXISTS (
            SELECT 1 FROM {table} written
            WHERE written.broadcast_id = %s AND LOWER(written.email) = audience.address_key)"""  # noqa: S608
        bounds: tuple[Any, ...] = (broadcast.pk,)
    else:
        where = "audience.address_key > %s"
        bounds = (after,)
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


def _insert_groups(broadcast: Broadcast, where: str, bounds: tuple[Any, ...]) -> None:
    """The classes of the audience rows `where` selects that are not there yet. How many
    registrants each has is counted once the first chunk is out (_count_groups) and again,
    exactly, when the fan-out ends (_finish)."""
    audience_sql, params = _audience_sql(broadcast)
    sql = f"""
        INSERT INTO {_table(AudienceGroup)}
            (broadcast_id, school_id, grade, class_name, registrants, confirmed)
        SELECT %s, audience.sender_school, audience.grade, audience.class_name, 0, 0
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
            (broadcast_id, school_id, grade, class_name, registrants, confirmed)
        SELECT %s, audience.sender_school, audience.grade, audience.class_name,
               COUNT(DISTINCT audience.registrant_id), 0
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

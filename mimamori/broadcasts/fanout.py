"""Fan-out: a broadcast becomes one delivery row per address, grouped into chunks.

The audience is written by INSERT … SELECT statements: rows are created in the database in
batches, never one commit per recipient, and the audience never passes through this process's
memory, however large it is. Merging (B5) happens in the same statements: one delivery per
address, naming every registrant whose slot holds it.

It takes two transactions, so that the first mails leave while the rest is still being
written: the first commits the class counters, the first chunk's rows and that chunk's task;
the second writes every other address and queues the other chunks. Each transaction queues
the tasks for what it wrote, so a crash between or inside them leaves either nothing or whole
chunks with their work queued, and running the fan-out again carries on where it stopped (the
class counters are the sign that the first transaction committed).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Max, Sum
from django.db.models.functions import Lower
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


def fan_out(broadcast_id: int) -> int:
    """Create the deliveries of a broadcast that is sending; return how many. Idempotent."""
    with transaction.atomic():
        broadcast = _sending(broadcast_id)
        if broadcast is None:
            return 0
        if not AudienceGroup.objects.filter(broadcast=broadcast).exists():
            _insert_groups(broadcast)
            if _insert_deliveries(broadcast, first_chunk=True):
                _insert_recipients(broadcast, first_chunk=True)
                lanes.queue_chunk(broadcast, 0)
    with transaction.atomic():
        broadcast = _sending(broadcast_id)
        if broadcast is None:
            return 0
        _insert_deliveries(broadcast, first_chunk=False)
        _insert_recipients(broadcast, first_chunk=False)
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
        chunks = (Delivery.objects.filter(broadcast=broadcast).aggregate(last=Max("chunk"))["last"] or 0) + 1
        for chunk in range(1, chunks):
            lanes.queue_chunk(broadcast, chunk)
    log.info("broadcast %s fanned out: %s messages in %s chunks", broadcast_id, messages, chunks)
    return messages


def _sending(broadcast_id: int) -> Broadcast | None:
    """The broadcast, locked, if it still waits for (the rest of) its fan-out."""
    broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
    if broadcast.status != BroadcastStatus.SENDING or broadcast.fanned_out_at is not None:
        return None
    return broadcast


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


def _insert_deliveries(broadcast: Broadcast, *, first_chunk: bool) -> int:
    """One row per address: the first CHUNK_SIZE addresses in address order as chunk 0, or
    every address not yet written, numbered from chunk 1 on in the same order."""
    audience_sql, params = _audience_sql(broadcast)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    token = _confirmation_token_sql(broadcast)
    if first_chunk:
        chunk, first, rest = "0", f"ORDER BY audience.address_key LIMIT {CHUNK_SIZE}", ""
    else:
        chunk, first = f"1 + (ROW_NUMBER() OVER (ORDER BY merged.address_key) - 1) / {CHUNK_SIZE}", ""
        # Every address chunk 0 did not take, even one that appeared since.
        rest = f"""WHERE NOT EXISTS (
            SELECT 1 FROM {table} written
            WHERE written.broadcast_id = %s AND LOWER(written.email) = merged.address_key)"""  # noqa: S608
    # The sender is the lowest-numbered school among the children the address is for.
    sql = f"""
        INSERT INTO {table}
            (broadcast_id, chunk, email, school_id, status, attempts, next_attempt_at, reply,
             confirmation_token)
        SELECT %s, {chunk}, merged.email, merged.sender_school, %s, 0, %s, '', {token}
        FROM (
            SELECT audience.address_key, MIN(audience.email) AS email,
                   MIN(audience.sender_school) AS sender_school
            FROM ({audience_sql}) audience
            GROUP BY audience.address_key
            {first}
        ) merged
        {rest}
    """  # noqa: S608 - table names from the models, numbers from this module, values as parameters
    due = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        tail = () if first_chunk else (broadcast.pk,)
        cursor.execute(sql, (broadcast.pk, DeliveryStatus.PENDING, due, *params, *tail))
        return cursor.rowcount


def _insert_groups(broadcast: Broadcast) -> None:
    audience_sql, params = _audience_sql(broadcast)
    groups = connection.ops.quote_name(AudienceGroup._meta.db_table)
    sql = f"""
        INSERT INTO {groups} (broadcast_id, school_id, grade, class_name, registrants, confirmed)
        SELECT %s, audience.sender_school, audience.grade, audience.class_name,
               COUNT(DISTINCT audience.registrant_id), 0
        FROM ({audience_sql}) audience
        GROUP BY audience.sender_school, audience.grade, audience.class_name
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, *params))


def _insert_recipients(broadcast: Broadcast, *, first_chunk: bool) -> None:
    """The registrants each delivery of chunk 0, or of every later chunk, is sent for."""
    audience_sql, params = _audience_sql(broadcast)
    recipients = connection.ops.quote_name(Recipient._meta.db_table)
    deliveries = connection.ops.quote_name(Delivery._meta.db_table)
    groups = connection.ops.quote_name(AudienceGroup._meta.db_table)
    # Chunk 0 holds the lowest addresses, so its recipients are among the audience rows up to
    # its last address (a range the address index serves); the later chunks need them all.
    last_of_first = (
        Delivery.objects.filter(broadcast=broadcast, chunk=0).aggregate(last=Max(Lower("email")))["last"]
        if first_chunk
        else None
    )
    # An address in slots 1 and 2 of one child names the child once, at the lower slot. The
    # delivery is found per row through the unique (broadcast, address) index: a join would
    # let the planner, which has no statistics yet for rows this transaction just wrote, pick
    # a nested loop over the whole audience for every delivery. (MATERIALIZED: look it up once
    # per row, not again for the filter.) No delivery means the address is in another chunk,
    # or appeared after the deliveries were written.
    sql = f"""
        WITH found AS MATERIALIZED (
            SELECT grouped.*,
                   (SELECT delivery.id FROM {deliveries} delivery
                    WHERE delivery.broadcast_id = %s AND LOWER(delivery.email) = grouped.address_key
                      {"" if first_chunk else "AND delivery.chunk > 0"}) AS delivery_id
            FROM (
                SELECT audience.address_key, audience.registrant_id, MIN(audience.slot) AS slot,
                       MIN(audience.sender_school) AS school, MIN(audience.grade) AS grade,
                       MIN(audience.class_name) AS class_name
                FROM ({audience_sql}) audience
                {"WHERE audience.address_key <= %s" if first_chunk else ""}
                GROUP BY audience.address_key, audience.registrant_id
            ) grouped
        )
        INSERT INTO {recipients} (broadcast_id, delivery_id, registrant_id, slot, group_id)
        SELECT %s, found.delivery_id, found.registrant_id, found.slot,
               (SELECT audience_group.id FROM {groups} audience_group
                WHERE audience_group.broadcast_id = %s AND audience_group.school_id = found.school
                  AND audience_group.grade = found.grade
                  AND audience_group.class_name = found.class_name)
        FROM found
        WHERE found.delivery_id IS NOT NULL
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        upto = (last_of_first,) if first_chunk else ()
        cursor.execute(sql, (broadcast.pk, *params, *upto, broadcast.pk, broadcast.pk))

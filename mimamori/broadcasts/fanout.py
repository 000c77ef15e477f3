"""Fan-out: a broadcast becomes one delivery row per address, grouped into chunks.

The whole audience is written by two INSERT … SELECT statements inside one transaction:
rows are created in the database in one batch, never one commit per recipient, and the
audience never passes through this process's memory, however large it is. Merging (B5)
happens in the same statements: one delivery per address, naming every registrant whose
slot holds it. The transaction also queues one delivery task per chunk, so either the
broadcast is fanned out and its work queued, or nothing happened and the fan-out can run again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Sum
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
        broadcast = Broadcast.objects.select_for_update().get(pk=broadcast_id)
        if broadcast.status != BroadcastStatus.SENDING or broadcast.fanned_out_at is not None:
            return 0
        broadcast.fanned_out_at = timezone.now()
        messages = _insert_deliveries(broadcast)
        _insert_groups(broadcast)
        _insert_recipients(broadcast)
        broadcast.message_count = messages
        broadcast.registrant_count = (
            AudienceGroup.objects.filter(broadcast=broadcast).aggregate(n=Sum("registrants"))["n"] or 0
        )
        if messages == 0:
            broadcast.status = BroadcastStatus.SENT
            broadcast.finished_at = broadcast.fanned_out_at
        broadcast.save(
            update_fields=["message_count", "registrant_count", "fanned_out_at", "status", "finished_at"]
        )
        chunks = (messages + CHUNK_SIZE - 1) // CHUNK_SIZE
        for chunk in range(chunks):
            lanes.queue_chunk(broadcast, chunk)
    log.info("broadcast %s fanned out: %s messages in %s chunks", broadcast_id, messages, chunks)
    return messages


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


def _insert_deliveries(broadcast: Broadcast) -> int:
    audience_sql, params = _audience_sql(broadcast)
    table = connection.ops.quote_name(Delivery._meta.db_table)
    token = _confirmation_token_sql(broadcast)
    # One row per address; chunk numbers follow the address order, CHUNK_SIZE rows each.
    # The sender is the lowest-numbered school among the children the address is for.
    sql = f"""
        INSERT INTO {table}
            (broadcast_id, chunk, email, school_id, status, attempts, next_attempt_at, reply,
             confirmation_token)
        SELECT %s, (ROW_NUMBER() OVER (ORDER BY merged.address_key) - 1) / %s,
               merged.email, merged.sender_school, %s, 0, %s, '', {token}
        FROM (
            SELECT audience.address_key, MIN(audience.email) AS email,
                   MIN(audience.sender_school) AS sender_school
            FROM ({audience_sql}) audience
            GROUP BY audience.address_key
        ) merged
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        due = connection.ops.adapt_datetimefield_value(broadcast.fanned_out_at)
        cursor.execute(sql, (broadcast.pk, CHUNK_SIZE, DeliveryStatus.PENDING, due, *params))
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


def _insert_recipients(broadcast: Broadcast) -> None:
    audience_sql, params = _audience_sql(broadcast)
    recipients = connection.ops.quote_name(Recipient._meta.db_table)
    deliveries = connection.ops.quote_name(Delivery._meta.db_table)
    groups = connection.ops.quote_name(AudienceGroup._meta.db_table)
    # An address in slots 1 and 2 of one child names the child once, at the lower slot. The
    # delivery is found per row through the unique (broadcast, address) index: a join would
    # let the planner, which has no statistics yet for rows this transaction just wrote, pick
    # a nested loop over the whole audience for every delivery.
    sql = f"""
        INSERT INTO {recipients} (broadcast_id, delivery_id, registrant_id, slot, group_id)
        SELECT %s,
               (SELECT delivery.id FROM {deliveries} delivery
                WHERE delivery.broadcast_id = %s AND LOWER(delivery.email) = grouped.address_key),
               grouped.registrant_id, grouped.slot,
               (SELECT audience_group.id FROM {groups} audience_group
                WHERE audience_group.broadcast_id = %s AND audience_group.school_id = grouped.school
                  AND audience_group.grade = grouped.grade
                  AND audience_group.class_name = grouped.class_name)
        FROM (
            SELECT audience.address_key, audience.registrant_id, MIN(audience.slot) AS slot,
                   MIN(audience.sender_school) AS school, MIN(audience.grade) AS grade,
                   MIN(audience.class_name) AS class_name
            FROM ({audience_sql}) audience
            GROUP BY audience.address_key, audience.registrant_id
        ) grouped
    """  # noqa: S608 - table names from the models, values as parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, (broadcast.pk, broadcast.pk, broadcast.pk, *params))

"""Background tasks of broadcasts: thin wrappers that take IDs and call the verbs."""

from __future__ import annotations

from mimamori.broadcasts import delivery, fanout
from mimamori.tasking import task


@task()
def fan_out_broadcast(broadcast_id: int, next_chunk: int | None = None) -> int:
    return fanout.fan_out(broadcast_id, next_chunk)


@task()
def deliver_chunk(broadcast_id: int, chunk: int) -> int:
    return delivery.deliver_chunk(broadcast_id, chunk)

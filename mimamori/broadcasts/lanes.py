"""Which lane and place in line each piece of broadcast work gets (B2).

Urgent broadcasts travel on their own queue, which a worker of its own serves, so their first
mails leave at once even while a large normal broadcast is being delivered. Within a lane, a
broadcast's later chunks step back (lower priority), so a school that starts a broadcast
after another's large one has its first chunks served next instead of waiting for the end.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from mimamori import tasking
from mimamori.broadcasts.models import Broadcast


def _lane(broadcast: Broadcast) -> tuple[str, int]:
    return (tasking.URGENT, 50) if broadcast.urgent else (tasking.DEFAULT, 0)


def _chunk_priority(base: int, chunk: int) -> int:
    return base - min(chunk, 50)


def queue_fan_out(
    broadcast: Broadcast, next_chunk: int | None = None, beside_chunk: int | None = None
) -> None:
    """Queue the next slice of the fan-out (fanout.fan_out). The first goes before everything
    else in its lane, as does one the sweep queues (``next_chunk`` None: wherever it is); a
    later slice goes where ``beside_chunk`` would, right after it, so it is written while the
    chunks queued before it are being delivered."""
    from mimamori.broadcasts.tasks import fan_out_broadcast

    Broadcast.objects.filter(pk=broadcast.pk).update(fan_out_queued_at=timezone.now())
    queue, base = _lane(broadcast)
    priority = base + 50 if beside_chunk is None else _chunk_priority(base, beside_chunk)
    arguments = (broadcast.pk,) if next_chunk is None else (broadcast.pk, next_chunk)
    tasking.enqueue(fan_out_broadcast, *arguments, queue=queue, priority=priority)


def queue_chunk(broadcast: Broadcast, chunk: int, run_after: datetime | None = None) -> None:
    from mimamori.broadcasts.tasks import deliver_chunk

    queue, base = _lane(broadcast)
    tasking.enqueue(
        deliver_chunk,
        broadcast.pk,
        chunk,
        queue=queue,
        priority=_chunk_priority(base, chunk),
        run_after=run_after,
    )

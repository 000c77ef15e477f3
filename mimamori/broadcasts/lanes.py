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


def queue_fan_out(broadcast: Broadcast) -> None:
    from mimamori.broadcasts.tasks import fan_out_broadcast

    Broadcast.objects.filter(pk=broadcast.pk).update(fan_out_queued_at=timezone.now())
    queue, base = _lane(broadcast)
    tasking.enqueue(fan_out_broadcast, broadcast.pk, queue=queue, priority=base + 50)


def queue_chunk(broadcast: Broadcast, chunk: int, run_after: datetime | None = None) -> None:
    from mimamori.broadcasts.tasks import deliver_chunk

    queue, base = _lane(broadcast)
    tasking.enqueue(
        deliver_chunk, broadcast.pk, chunk, queue=queue, priority=base - min(chunk, 50), run_after=run_after
    )

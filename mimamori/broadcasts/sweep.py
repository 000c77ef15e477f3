"""The periodic sweep: picks up work that a crash or a lost queue message left behind.

Every worker runs it every few seconds (see the worker command). Each step is a conditional
update or an idempotent re-queue, so sweeps running at the same time on several machines do
no harm: a re-queued chunk whose rows were claimed meanwhile finds nothing to do.

"Stale" means untouched for longer than the delivery lease: a worker holding rows renews its
lease while it works, and a queued chunk is normally picked up within seconds. Under a
backlog longer than the lease, a chunk may be queued twice; the second run is a no-op.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mimamori.broadcasts import lanes
from mimamori.broadcasts.delivery import finish_if_done
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus

log = logging.getLogger(__name__)


def sweep() -> dict[str, int]:
    now = timezone.now()
    stale = now - timedelta(seconds=settings.MIMAMORI_DELIVERY_LEASE_SECONDS)
    report = {"reclaimed": 0, "requeued_chunks": 0, "requeued_fan_outs": 0, "finished": 0}

    with transaction.atomic():
        # Rows held by a worker that stopped renewing its lease (killed, say) are offered again.
        report["reclaimed"] = Delivery.objects.filter(
            status=DeliveryStatus.SENDING, claimed_at__lt=stale
        ).update(status=DeliveryStatus.PENDING, claim=None, claimed_at=None, next_attempt_at=stale)

        # Fan-outs queued long ago and not done: the task was lost or its worker died.
        for broadcast in Broadcast.objects.filter(
            status=BroadcastStatus.SENDING, fanned_out_at__isnull=True, fan_out_queued_at__lt=stale
        ):
            lanes.queue_fan_out(broadcast)
            report["requeued_fan_outs"] += 1

        # Open rows long past due that nobody holds: their chunk's task is gone.
        overdue = Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.DEFERRED],
            next_attempt_at__lte=stale,
            broadcast__status=BroadcastStatus.SENDING,
        )
        chunks = sorted(set(overdue.values_list("broadcast_id", "chunk")))
        if chunks:
            overdue.update(next_attempt_at=now)
            broadcasts = {b.pk: b for b in Broadcast.objects.filter(pk__in={b for b, _ in chunks})}
            for broadcast_id, chunk in chunks:
                lanes.queue_chunk(broadcasts[broadcast_id], chunk)
            report["requeued_chunks"] = len(chunks)

    for broadcast_id in Broadcast.objects.filter(
        status=BroadcastStatus.SENDING, fanned_out_at__isnull=False
    ).values_list("pk", flat=True):
        report["finished"] += finish_if_done(broadcast_id)
    if any(report.values()):
        log.info("sweep: %s", report)
    return report

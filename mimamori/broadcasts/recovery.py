"""Broadcasts' step of the periodic sweep (tasking/sweep.py): picks up the broadcast work that
a crash or a lost queue message left behind, and calls finished broadcasts sent.

Each part is a conditional update or an idempotent re-queue, so sweeps running at the same time
on several machines do no harm: a re-queued chunk whose rows were claimed meanwhile finds
nothing to do.

- A worker holding rows renews its lease while it works; rows whose lease ran out belong to a
  dead worker and are offered again at once.
- Queued work is normally picked up within seconds, but a lost queue message (a Celery
  publish that failed after commit) would leave rows waiting forever; rows still waiting long
  after they were due (MIMAMORI_REQUEUE_AFTER_SECONDS, far longer than any backlog should
  last) have their chunk queued again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from mimamori.broadcasts import lanes
from mimamori.broadcasts.delivery import finish_if_done
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery, DeliveryStatus


def recover(now: datetime) -> dict[str, int]:
    lease_ended = now - timedelta(seconds=settings.MIMAMORI_DELIVERY_LEASE_SECONDS)
    long_overdue = now - timedelta(seconds=settings.MIMAMORI_REQUEUE_AFTER_SECONDS)
    report = {"reclaimed": 0, "requeued_chunks": 0, "requeued_fan_outs": 0, "finished": 0}

    with transaction.atomic():
        reclaimed = _take(Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=lease_ended))
        overdue = _take(
            Delivery.objects.filter(
                status__in=[DeliveryStatus.PENDING, DeliveryStatus.DEFERRED],
                next_attempt_at__lt=long_overdue,
                broadcast__status=BroadcastStatus.SENDING,
            )
        )
        Delivery.objects.filter(pk__in=[pk for pk, _, _ in reclaimed + overdue]).update(
            status=DeliveryStatus.PENDING, claim=None, claimed_at=None, next_attempt_at=now
        )
        report["reclaimed"] = len(reclaimed)
        chunks = sorted({(broadcast, chunk) for _, broadcast, chunk in reclaimed + overdue})
        broadcasts = {b.pk: b for b in Broadcast.objects.filter(pk__in={b for b, _ in chunks})}
        for broadcast_id, chunk in chunks:
            lanes.queue_chunk(broadcasts[broadcast_id], chunk)
        report["requeued_chunks"] = len(chunks)

        # Fan-outs queued long ago and not done: the task was lost or its worker died.
        for broadcast in Broadcast.objects.filter(
            status=BroadcastStatus.SENDING, fanned_out_at__isnull=True, fan_out_queued_at__lt=lease_ended
        ):
            lanes.queue_fan_out(broadcast)
            report["requeued_fan_outs"] += 1

    for broadcast_id in Broadcast.objects.filter(
        status=BroadcastStatus.SENDING, fanned_out_at__isnull=False
    ).values_list("pk", flat=True):
        report["finished"] += finish_if_done(broadcast_id)
    return report


def _take(rows: QuerySet[Delivery]) -> list[tuple[int, int, int]]:
    # SKIP LOCKED: rows a worker is writing right now are not stale; leave them.
    return list(rows.select_for_update(skip_locked=True).values_list("pk", "broadcast_id", "chunk"))

"""Run queued background tasks through the embedded worker's own code path.

The rows are claimed and run by django-tasks-db's Worker, so payloads are serialised and
deserialised as in production. Its polling loop is skipped because that loop closes the
database connection whenever autocommit is off, which is always the case inside a test's
transaction.
"""

from __future__ import annotations

from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from mimamori.broadcasts import fanout
from mimamori.broadcasts.models import Broadcast

_worker = Worker(
    queue_names=["*"],
    interval=0,
    batch=True,
    backend_name="default",
    startup_delay=False,
    max_tasks=None,
    worker_id="test-worker",
    excluded_queue_names=[],
)


def run_queued_tasks() -> int:
    """Run every ready task, including those the tasks enqueue; return how many ran."""
    ran = 0
    while (task_result := DBTaskResult.objects.ready().order_by("enqueued_at").first()) is not None:
        task_result.claim(_worker.worker_id)
        _worker.run_task(task_result)
        ran += 1
    return ran


def run_until_quiet(rounds: int = 50) -> None:
    """Run tasks, and the tasks they queue (retries, later chunks), until none is ready."""
    for _ in range(rounds):
        if not run_queued_tasks():
            return


def fan_out_everything(broadcast: Broadcast) -> None:
    """Every slice of the fan-out in this call, as the chain of its tasks would write them
    (the tasks it queues stay queued)."""
    while fanout.fan_out(broadcast.pk):
        pass

"""The one seam between the code that asks for background work and the engine that runs it.

Callers name a django-tasks ``Task`` and pass only IDs. In embedded mode (no BROKER_URL) the
task row is written by the django-tasks database backend in the caller's transaction, so the
work exists exactly when its data does. In distributed mode the same task is published to
Celery (tasking/celery.py) once the caller's transaction commits, so a worker never looks
for rows that are not there yet; if publishing fails, the periodic sweep re-queues the work.
Queue names are declared in tasking/queues.py; the sweep that picks up what a crash left
behind is tasking/sweep.py. Tasks live in their app's ``tasks`` module (see celery.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django_tasks.base import Task

from mimamori.tasking.discovery import project_tasks
from mimamori.tasking.durable import task
from mimamori.tasking.queues import DEFAULT, GATES, MAIL, QUEUES, URGENT

__all__ = ["DEFAULT", "GATES", "MAIL", "QUEUES", "URGENT", "enqueue", "task"]


def enqueue(
    task: Task[Any, Any],
    *args: int | str,
    queue: str = DEFAULT,
    priority: int = 0,
    run_after: datetime | None = None,
) -> None:
    """Queue ``task(*args)``. ``priority`` runs from -100 (last) to 100 (first)."""
    if queue not in QUEUES:
        raise ValueError(f"Unknown queue {queue!r}: one of {QUEUES}.")
    if task.module_path not in project_tasks():
        raise ValueError(
            f"{task.module_path} is not in an app's tasks module: distributed workers would refuse it."
        )
    if settings.BROKER_URL:
        _publish(task, args, queue, priority, run_after)
        return
    options: dict[str, Any] = {"queue_name": queue, "priority": max(-100, min(100, priority))}
    if run_after is not None:
        options["run_after"] = run_after
    task.using(**options).enqueue(*args)


def _publish(
    task: Task[Any, Any], args: tuple[int | str, ...], queue: str, priority: int, run_after: datetime | None
) -> None:
    from mimamori.tasking import celery

    name = task.module_path

    def publish() -> None:
        celery.app().send_task(
            name,
            args=list(args),
            queue=celery.broker_queue(queue),
            routing_key=celery.broker_queue(queue),
            priority=celery.celery_priority(priority),
            eta=run_after,
        )

    # robust: a broker hiccup must not fail the request whose data is already committed.
    transaction.on_commit(publish, robust=True)

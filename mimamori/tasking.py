"""The one seam between the code that asks for background work and the engine that runs it.

Callers name a django-tasks ``Task`` and pass only IDs. In embedded mode (no BROKER_URL) the
task row is written by the django-tasks database backend in the caller's transaction, so the
work exists exactly when its data does. Queue names and priorities are declared here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django_tasks.base import Task

# Urgent broadcasts have a queue of their own, served by a worker that does nothing else, so an
# alert never waits behind a large normal broadcast (B2).
URGENT = "urgent"
DEFAULT = "default"
MAIL = "mail"
QUEUES = [URGENT, DEFAULT, MAIL]


def enqueue(
    task: Task[Any, Any],
    *args: int | str,
    queue: str = DEFAULT,
    priority: int = 0,
    run_after: datetime | None = None,
) -> None:
    """Queue ``task(*args)``. ``priority`` runs from -100 (last) to 100 (first)."""
    options: dict[str, Any] = {"queue_name": queue, "priority": max(-100, min(100, priority))}
    if run_after is not None:
        options["run_after"] = run_after
    task.using(**options).enqueue(*args)

"""The distributed engine: Celery on RabbitMQ or Redis, used when BROKER_URL is set.

It runs the very same task functions as the embedded engine: every django-tasks ``Task`` in an
app's ``tasks`` module (tasking/discovery.py) gets a Celery task of the same name (its module
path) whose body is ``task.func``.
Messages carry IDs only; the database stays the truth, so a lost or repeated message costs
nothing but a no-op (each task claims its rows with a conditional UPDATE) and the periodic
sweep re-queues what a crash left behind.

Reliability settings: a message is acknowledged only after its task ran (acks_late), a worker
takes one message at a time (prefetch 1), and a task whose worker died is handed back.
"""

from __future__ import annotations

import functools
import os
import socket
from typing import Any

from celery import Celery
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django_tasks.base import Task
from kombu import Queue

from mimamori.tasking.discovery import project_tasks
from mimamori.tasking.queues import DEFAULT, QUEUES

# Celery priorities run 0-9. RabbitMQ serves the highest number first (with x-max-priority
# on the queue); Redis emulates priorities with one list per step and serves 0 first.
PRIORITY_STEPS = 10
# How long a task that found the database away waits before it is tried again.
DATABASE_RETRY_SECONDS = 3


def broker_queue(name: str) -> str:
    """The broker's name for one of tasking.QUEUES (a prefix keeps installations apart)."""
    return f"{settings.MIMAMORI_QUEUE_PREFIX}{name}"


def _is_redis(url: str) -> bool:
    return url.split(":", 1)[0] in {"redis", "rediss", "redis+socket"}


def celery_priority(priority: int) -> int:
    """Map tasking's -100 (last) … 100 (first) onto the broker's 0-9 scale."""
    step = round((max(-100, min(100, priority)) + 100) * (PRIORITY_STEPS - 1) / 200)
    return PRIORITY_STEPS - 1 - step if _is_redis(settings.BROKER_URL or "") else step


@functools.cache
def _app(broker_url: str, prefix: str) -> Celery:
    redis = _is_redis(broker_url)
    queue_arguments = {} if redis else {"x-max-priority": PRIORITY_STEPS - 1}
    app = Celery("mimamori", set_as_current=False)
    app.conf.update(
        broker_url=broker_url,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_queues=[
            Queue(f"{prefix}{name}", routing_key=f"{prefix}{name}", queue_arguments=queue_arguments)
            for name in QUEUES
        ],
        task_default_queue=f"{prefix}{DEFAULT}",
        task_create_missing_queues=False,
        # Django's LOGGING stays in charge of the worker's log lines.
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_transport_options=(
            {"priority_steps": list(range(PRIORITY_STEPS)), "queue_order_strategy": "priority"}
            if redis
            else {}
        ),
    )
    return app


def app() -> Celery:
    """The Celery app for the configured broker (settings are read when first asked)."""
    if not settings.BROKER_URL:
        raise RuntimeError("The distributed engine needs BROKER_URL.")
    return _app(settings.BROKER_URL, settings.MIMAMORI_QUEUE_PREFIX)


def _runner(task: Task[Any, Any]) -> Any:
    def run(self: Any, *args: Any) -> Any:
        try:
            return task.func(*args)
        except (OperationalError, InterfaceError) as error:
            # The database is away (a restart, a failover). Failing would drop the message and
            # leave its rows to the sweep's long re-queue; publish it again for a little later.
            connections.close_all()
            raise self.retry(exc=error, countdown=DATABASE_RETRY_SECONDS, max_retries=None) from error

    run.__name__ = task.func.__name__
    run.__doc__ = task.func.__doc__
    return run


def register_tasks(celery: Celery) -> None:
    """Give the worker one Celery task per django-tasks Task, calling the same function."""
    for module_path, task in project_tasks().items():
        if module_path not in celery.tasks:
            celery.task(name=module_path, bind=True)(_runner(task))


def worker(queues: list[str], concurrency: int, loglevel: str) -> Any:
    """A Celery worker consuming ``queues`` (tasking's names), ready to start()."""
    celery = app()
    register_tasks(celery)
    # Threads, not forked children: delivery is I/O-bound and already uses threads, and the
    # worker's own sweep thread holds a database connection that a fork must not share.
    # Run one `mimamori worker` per core to use several cores.
    return celery.Worker(
        hostname=f"mimamori-{'+'.join(queues)}-{os.getpid()}@{socket.gethostname()}",
        queues=[broker_queue(name) for name in queues],
        pool="threads",
        concurrency=concurrency,
        loglevel=loglevel,
        without_gossip=True,
        without_mingle=True,
    )

"""The decorator every background task is made with: django-tasks' ``task``, whose function
outlives the database going away in embedded mode.

In distributed mode the Celery runner (tasking/celery.py) answers a database error by publishing
the task again a little later. The database-backed worker of embedded mode has no such retry: a
task whose function meets the database away (a restart, a failover) is marked failed, or, if
that mark cannot be written either, left "running" for nobody. The rows it was about to work on
would then wait for the sweep's long re-queue (MIMAMORI_REQUEUE_AFTER_SECONDS, 15 minutes): a
chunk of a broadcast claimed by a worker during a PostgreSQL restart would be delivered a quarter
of an hour late (the likeliest reading of a postgres-restart drill that found 500 of 1,000 mails
still pending after 60 s). So here the function is called again, after a growing pause and with fresh
connections, until the database answers, for at most PATIENCE_SECONDS;
every task is written to be run again (the verbs are idempotent, as Celery's at-least-once
delivery already requires).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from django_tasks import task as django_task
from django_tasks.base import Task

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Longer than a restart or a failover takes; past it the error goes up and the sweep's nets remain.
PATIENCE_SECONDS = 300


def task(**options: Any) -> Callable[[Callable[P, T]], Task[P, T]]:
    """``@task()`` / ``@task(queue_name=…)``, as django-tasks' own."""

    def decorate(func: Callable[P, T]) -> Task[P, T]:
        @functools.wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> T:
            if settings.BROKER_URL:
                return func(*args, **kwargs)  # Celery's runner retries (tasking/celery.py)
            deadline = time.monotonic() + PATIENCE_SECONDS
            pause = 0.5
            while True:
                try:
                    return func(*args, **kwargs)
                except (OperationalError, InterfaceError):
                    if time.monotonic() + pause > deadline:
                        raise
                    log.warning(
                        "%s: the database is unavailable; running it again in %.1f s",
                        func.__qualname__,
                        pause,
                        exc_info=True,
                    )
                # A connection that lost its server is unusable: the next query opens a new one.
                connections.close_all()
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

        made: Task[P, T] = django_task(**options)(run)
        return made

    return decorate

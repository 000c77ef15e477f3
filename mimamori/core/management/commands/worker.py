"""`mimamori worker`: one background worker in the foreground, for either engine.

Embedded mode (no BROKER_URL): the database-backed django-tasks worker. Distributed mode:
a Celery worker on the broker (mimamori/tasking/celery.py). Either way the worker also runs the
periodic sweep (mimamori/tasking/sweep.py) in a thread of its own, so work that a crash
or a lost message left behind is picked up again by whichever worker is still alive.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, close_old_connections, connections

from mimamori import tasking
from mimamori.core import startup

log = logging.getLogger("mimamori.worker")


def _exit_with_parent(parent_pid: int) -> None:
    # `mimamori run` stops its workers on exit; this covers the case where run itself is
    # killed outright, so no worker is left behind holding the database.
    while os.getppid() == parent_pid:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


class Sweeper(threading.Thread):
    """Runs the sweep now and then every ``seconds``, on its own database connection."""

    def __init__(self, seconds: float) -> None:
        super().__init__(name="sweep", daemon=True)
        self.seconds = seconds
        self.stopping = threading.Event()

    def run(self) -> None:
        from mimamori.tasking.sweep import sweep

        try:
            while not self.stopping.is_set():
                # Django's connections are per thread: this one is the sweep's own.
                close_old_connections()
                try:
                    sweep()
                except Exception:
                    # The database may be restarting; the next round tries again.
                    log.exception("sweep failed; next attempt in %s s", self.seconds)
                self.stopping.wait(self.seconds)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=30)


def _queues(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    if names in ([], ["*"]):
        return list(tasking.QUEUES)
    unknown = sorted(set(names) - set(tasking.QUEUES))
    if unknown:
        raise CommandError(f"Unknown queue {', '.join(unknown)}: choose from {', '.join(tasking.QUEUES)}.")
    return names


class Command(BaseCommand):
    help = (
        "Run a background worker in the foreground; start as many as you like, on this or other "
        "machines sharing the database. Without BROKER_URL it works on the database queue; with "
        "it, it is a Celery worker on RabbitMQ or Redis. Every worker also runs the periodic sweep."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queues",
            "--queue-name",
            dest="queues",
            default="*",
            help=(
                f"Queues to work on, separated by commas ({', '.join(tasking.QUEUES)}); '*' for all "
                "(default). `--queues urgent` makes a worker that only serves urgent broadcasts."
            ),
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=2,
            help="Tasks run at once (distributed mode; default 2). Each uses MIMAMORI_SMTP_CONNECTIONS.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Embedded mode: seconds between polls when there is nothing to do (default 1).",
        )
        parser.add_argument(
            "--batch", action="store_true", help="Embedded mode: run what is queued, then exit (no sweep)."
        )
        parser.add_argument(
            "--no-sweep", action="store_true", help="Leave the periodic sweep to the other workers."
        )
        parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
        # `mimamori run`'s pipe: the worker writes "ready" there, or why it could not start.
        parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        queues = _queues(options["queues"])
        if options["parent_pid"]:
            threading.Thread(target=_exit_with_parent, args=(options["parent_pid"],), daemon=True).start()
        report = startup.Report(options["ready_fd"])
        if options["batch"] and settings.BROKER_URL:
            raise CommandError("--batch works on the database queue only; unset BROKER_URL.")
        # Take no work before the database (and the broker) answer; give up, status 3, after
        # MIMAMORI_START_WAIT_SECONDS. systemd's Restart= then tries again later.
        try:
            startup.wait_for_services()
        except startup.Refused as refused:
            report.refused(refused)
        sweeper = None
        if settings.MIMAMORI_SWEEP_SECONDS > 0 and not (options["no_sweep"] or options["batch"]):
            sweeper = Sweeper(settings.MIMAMORI_SWEEP_SECONDS)
            sweeper.start()
        try:
            if settings.BROKER_URL:
                self._celery(queues, options, report)
            else:
                report.ready()
                self._database_queue(queues, options)
        finally:
            if sweeper is not None:
                sweeper.stop()

    def _database_queue(self, queues: list[str], options: dict[str, Any]) -> None:
        delay = 1.0
        while True:
            began = time.monotonic()
            try:
                call_command(
                    "db_worker",
                    queue_name=",".join(queues),
                    interval=options["interval"],
                    batch=options["batch"],
                    reload=False,
                    startup_delay=False,
                    verbosity=options["verbosity"],
                )
                return
            except (OperationalError, InterfaceError):
                # django-tasks' worker gives up when the database goes away (a restart, a
                # failover). A worker must outlive that: the task in hand is handed back by the
                # sweep once its lease runs out, so wait, reconnect and carry on.
                if options["batch"]:
                    raise
                log.exception("the database is unreachable; reconnecting in %.0f s", delay)
            # The dead loop's signal handlers would only flag it to stop: make SIGTERM and
            # Ctrl-C end the wait at once, until the next loop installs its own.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            connections.close_all()
            delay = 1.0 if time.monotonic() - began > 60 else min(delay * 2, 10.0)
            time.sleep(delay)

    def _celery(self, queues: list[str], options: dict[str, Any], report: startup.Report) -> None:
        from celery.signals import worker_ready

        from mimamori.tasking import celery

        level = {0: "WARNING", 1: "INFO"}.get(options["verbosity"], "DEBUG")
        worker = celery.worker(queues, concurrency=max(1, options["concurrency"]), loglevel=level)
        # Ready once it consumes its queues (declared on the broker by then), not before.
        worker_ready.connect(lambda **_: report.ready(), weak=False)
        worker.start()
        if worker.exitcode:
            raise CommandError(f"The Celery worker stopped with status {worker.exitcode}.")

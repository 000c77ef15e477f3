"""`mimamori worker`: one background worker in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


def _exit_with_parent(parent_pid: int) -> None:
    # `mimamori run` stops its worker on exit; this covers the case where run itself is
    # killed outright, so no worker is left behind holding the database.
    while os.getppid() == parent_pid:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)


class Command(BaseCommand):
    help = (
        "Run a background worker in the foreground, for example on another machine sharing the "
        "database. This is the embedded engine: the database-backed django-tasks worker. The "
        "distributed engine (Celery on RabbitMQ or Redis) arrives with BROKER_URL in a later issue."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue-name",
            default="*",
            help="Queues to work on, separated by commas; '*' for all (default).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=1.0,
            help="Seconds to wait between polls when there is nothing to do (default 1).",
        )
        parser.add_argument("--batch", action="store_true", help="Run what is queued, then exit.")
        parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.BROKER_URL:
            self.stderr.write(
                "BROKER_URL is set, but the distributed engine is not built yet: "
                "working on the database queue instead."
            )
        if options["parent_pid"]:
            threading.Thread(target=_exit_with_parent, args=(options["parent_pid"],), daemon=True).start()
        call_command(
            "db_worker",
            queue_name=options["queue_name"],
            interval=options["interval"],
            batch=options["batch"],
            reload=False,
            startup_delay=False,
            verbosity=options["verbosity"],
        )

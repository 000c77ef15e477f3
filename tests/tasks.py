"""Run queued background tasks the way the embedded worker does, payloads serialised as in production."""

from __future__ import annotations

from django.core.management import call_command


def run_queued_tasks() -> None:
    call_command("db_worker", "--batch", "--queue-name=*", "--interval=0", verbosity=0)

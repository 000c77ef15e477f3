"""The periodic sweep: every worker runs it every few seconds (see the worker command).

It picks up work that a crash or a lost queue message left behind, and starts work whose time
has come. The steps belong to the apps that own the work; each app registers its own in its
AppConfig.ready(), so this module knows none of them. Every step must be safe to run on several
machines at once (a conditional update, a row lock, an idempotent re-queue) and cheap when it
finds nothing to do (one indexed query).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone

log = logging.getLogger(__name__)

# A step is given the sweep's time and says what it did: one count (reported under the name it
# was registered with) or several, by name.
Step = Callable[[datetime], int | dict[str, int]]

_steps: dict[str, Step] = {}


def register(name: str, step: Step) -> None:
    """Run ``step`` at every sweep, after the steps registered before it. Registering the same
    name again replaces the step, so an app whose ready() runs twice registers once."""
    _steps[name] = step


def sweep() -> dict[str, int]:
    """Run every step once; returns what each did."""
    now = timezone.now()
    report: dict[str, int] = {}
    for name, step in _steps.items():
        done = step(now)
        report.update(done if isinstance(done, dict) else {name: done})
    if any(report.values()):
        log.info("sweep: %s", report)
    return report

"""The fault drills of bench/drills.py at small N, with real worker processes (issue 6).

Each drill sends a broadcast to 1,000 registrants while something breaks (the sink refuses, the
sink is down, PostgreSQL restarts, RabbitMQ restarts) and checks that everyone got the mail,
nobody was lost and the duplicates stay within the in-flight bound. The kill -9 drill is in
tests/test_engines.py. Workers use this run's PostgreSQL test database, so the data must be
committed (transaction=True); on SQLite these tests are skipped. Restarting a service needs root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import drills

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N = 1000


@pytest.fixture
def drill(settings: Any, tmp_path: Path) -> Callable[..., drills.Result]:
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("worker processes need the PostgreSQL test database (DATABASE_URL=postgres://…)")
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    def run(name: str, disrupt: Callable[[drills.Stage], None], engine: str = "embedded") -> drills.Result:
        result = drills.run_drill(
            name, disrupt, registrants=N, engine=engine, database_url=drills.database_url(), tmp=tmp_path,
            timeout=60,
        )  # fmt: skip
        print(f"\n{drills.HEADERS}\n{result.row()}")
        return result

    return run


def test_sink_refusing_a_tenth_of_recipients_delays_but_loses_nothing(
    drill: Callable[..., drills.Result],
) -> None:
    result = drill("refuse-10pct", drills.refuse_10pct)
    assert (result.delivered, result.lost, result.duplicated) == (N, 0, 0)
    assert result.passed, result.why


def test_sink_down_for_a_while_then_everything_is_delivered(drill: Callable[..., drills.Result]) -> None:
    result = drill("sink-down", drills.sink_down(5))
    assert (result.delivered, result.lost) == (N, 0)
    assert result.duplicated <= result.bound
    assert result.passed, result.why


def test_postgresql_restart_mid_send_workers_reconnect_and_finish(
    drill: Callable[..., drills.Result],
) -> None:
    if not drills.can_restart_postgres():
        pytest.skip("restarting PostgreSQL needs root and a local Debian cluster")
    try:
        result = drill("postgres-restart", drills.postgres_restart)
    finally:
        drills.ensure_postgres()
    assert (result.delivered, result.lost) == (N, 0)
    assert result.duplicated <= result.bound
    # Among the checks: no worker process exited on its own when the database went away.
    assert result.passed, result.why


def test_rabbitmq_restart_mid_send_resumes(drill: Callable[..., drills.Result]) -> None:
    if not drills.can_restart_rabbitmq():
        pytest.skip("restarting RabbitMQ needs root and rabbitmqctl")
    try:
        result = drill("rabbitmq-restart", drills.rabbitmq_restart, engine="rabbitmq")
    finally:
        drills.ensure_rabbitmq()
    assert (result.delivered, result.lost) == (N, 0)
    assert result.duplicated <= result.bound
    assert result.passed, result.why

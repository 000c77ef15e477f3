"""The fault drills of bench/drills.py at small N, with real worker processes (issue 6).

Each drill sends a broadcast to 1,000 registrants while something breaks (the sink refuses, the
sink is down, PostgreSQL restarts, RabbitMQ restarts) and checks that everyone got the mail,
nobody was lost and the duplicates stay within the in-flight bound. The kill -9 drill is in
tests/test_engines.py. Workers use this run's PostgreSQL test database (but for the PostgreSQL
restart, below), so the data must be committed (transaction=True); on SQLite these tests are
skipped.

The PostgreSQL restart restarts a server of the drill's own (bench/pgserver.py: initdb in a
temporary directory, its own port), never the machine's service, which this run's own database
and everything else on the machine share: the drill runs as `python -m bench.drills --only
postgres-restart`, which makes that server, migrates its database and restarts it mid-send.
Restarting RabbitMQ needs root.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import drills, pgserver

pytestmark = [pytest.mark.slow, pytest.mark.serial]
ROOT = Path(__file__).resolve().parent.parent

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


@pytest.mark.django_db(transaction=True)
def test_sink_refusing_a_tenth_of_recipients_delays_but_loses_nothing(
    drill: Callable[..., drills.Result],
) -> None:
    result = drill("refuse-10pct", drills.refuse_10pct)
    assert (result.delivered, result.lost, result.duplicated) == (N, 0, 0)
    assert result.passed, result.why


@pytest.mark.django_db(transaction=True)
def test_sink_down_for_a_while_then_everything_is_delivered(drill: Callable[..., drills.Result]) -> None:
    result = drill("sink-down", drills.sink_down(5))
    assert (result.delivered, result.lost) == (N, 0)
    assert result.duplicated <= result.bound
    assert result.passed, result.why


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="the drill is part of the PostgreSQL run",
)
@pytest.mark.skipif(not pgserver.available(), reason="needs PostgreSQL's server binaries (initdb, pg_ctl)")
def test_postgresql_restart_mid_send_workers_reconnect_and_finish(tmp_path: Path) -> None:
    output = tmp_path / "drills.json"
    drop = {"DATABASE_URL", "EMAIL_URL", "BROKER_URL", "BASE_URL"}
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.drills", "--only", "postgres-restart", f"--registrants={N}",
            "--timeout=60", f"--output={output}",
        ],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    print(done.stdout)
    assert output.exists(), done.stdout[-3000:] + done.stderr[-5000:]
    (result,) = json.loads(output.read_text())["drills"]
    assert result["name"] == "postgres-restart"
    assert "PostgreSQL restarted" in result["events"], result
    assert (result["delivered"], result["lost"]) == (N, 0), result
    assert result["duplicated"] <= result["bound"], result
    # Among the checks: no worker process exited on its own when the database went away.
    assert result["passed"], result["why"] + "\n" + done.stderr[-5000:]
    assert done.returncode == 0, done.stderr[-5000:]


@pytest.mark.django_db(transaction=True)
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

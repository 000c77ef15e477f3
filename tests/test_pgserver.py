"""The PostgreSQL servers of the drills' own (bench/pgserver.py), and the check that a run of the
suite leaves the server of DATABASE_URL, the machine's shared service, alone (tests/conftest.py).

Everything here happens on private servers: the run's own server is never touched. PostgreSQL
runs of the suite only, as the drills that use these servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench import pgserver

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="part of the PostgreSQL run, as the drills that use private servers",
    ),
    pytest.mark.skipif(not pgserver.available(), reason="needs PostgreSQL's server binaries"),
]


def test_a_private_server_restarts_stops_and_starts_again_then_is_removed() -> None:
    with pgserver.private_postgres("mimamori-test-") as server:
        started = pgserver.postmaster_start(server.url())
        server.restart()
        assert pgserver.postmaster_start(server.url()) != started
        server.stop()
        assert not server.running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.url(), connect_timeout=5).close()
        server.ensure_running()
        url = server.create_database("scratch")
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT current_database()").fetchone() == ("scratch",)
    assert not server.directory.exists()


INNER = """
import json
import os
import subprocess


def test_that_{verb}_the_server() -> None:
    if {restart}:
        subprocess.run(json.loads(os.environ["RESTART_COMMAND"]), check=True, capture_output=True)
"""


def _inner_run(
    tmp_path: Path, server: pgserver.PrivatePostgres, restart: bool, *options: str
) -> subprocess.CompletedProcess[str]:
    """pytest with this suite's conftest, on DATABASE_URL = ``server``, of one test that restarts
    that server or not."""
    test = tmp_path / f"test_inner_{restart}.py"
    test.write_text(INNER.format(verb="restarts" if restart else "leaves", restart=restart))
    environment = {
        **os.environ,
        "DATABASE_URL": server.url(),
        "SECRET_KEY": "inner-run-secret-key-for-this-test-only",
        "PYTHONPATH": str(ROOT),
        "RESTART_COMMAND": json.dumps(server.restart_command()),
    }
    ini = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(ROOT)]
    return subprocess.run(
        [
            sys.executable, "-m", "pytest", str(test), *ini,
            "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", *options,
        ],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_run_fails_when_the_server_of_database_url_restarts_during_it(tmp_path: Path) -> None:
    with pgserver.private_postgres("mimamori-test-") as server:
        quiet = _inner_run(tmp_path, server, False)
        assert quiet.returncode == 0, quiet.stdout + quiet.stderr
        assert "restarted during this run" not in quiet.stdout

        # Alone, and as `make test` runs the suite (the test in a pytest-xdist process).
        for options in [(), ("-n", "1", "--dist", "loadfile")]:
            restarted = _inner_run(tmp_path, server, True, *options)
            assert "1 passed" in restarted.stdout, restarted.stdout + restarted.stderr
            assert restarted.returncode == pytest.ExitCode.TESTS_FAILED, restarted.stdout + restarted.stderr
            assert f"The PostgreSQL server at {server.url()} restarted during this run" in restarted.stdout

"""What cannot work is refused when a process starts (issue 17): the exit status, the one line on
standard error that says what to set, and nothing served (the ports stay closed throughout).

Each case runs the real command in a process of its own with a clean environment, as an
operator would: `mimamori run`, `mimamori worker`, and gunicorn with mimamori.wsgi.
MIMAMORI_START_WAIT_SECONDS is 1, so a service that does not answer is given up quickly.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mimamori.core import startup
from tests.mailsink import free_port

POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def _environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment: nothing of this test run's settings, a data directory of its own."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("PATH", "HOME", "LANG", "LC_", "VIRTUAL_ENV", "PYTHON")) and not k.endswith("_FILE")
    }
    return {
        **kept,
        "MIMAMORI_DATA_DIR": str(tmp_path / "data"),
        "MIMAMORI_START_WAIT_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **values,
    }


@dataclass
class Outcome:
    status: int
    stdout: str
    stderr: str
    listened: set[int] = field(default_factory=set)

    @property
    def lines(self) -> list[str]:
        return self.stderr.strip().splitlines()


def _start(
    command: list[str], environment: dict[str, str], watch: list[int], timeout: float = 120
) -> Outcome:
    """Run ``command`` to its end while trying, again and again, to connect to the ``watch`` ports."""
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    listened: set[int] = set()
    done = threading.Event()

    def knock() -> None:
        while not done.is_set():
            for port in watch:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    listened.add(port)
            done.wait(0.02)

    knocker = threading.Thread(target=knock, daemon=True)
    knocker.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        done.set()
        knocker.join()
    return Outcome(process.returncode, stdout, stderr, listened)


def _run(tmp_path: Path, **values: str) -> Outcome:
    """`mimamori run` on free ports, the development mailbox's too, watching both."""
    port, mailbox = free_port(), free_port()
    environment = _environment(tmp_path, MIMAMORI_DEVMAIL_PORT=str(mailbox), **values)
    return _start([sys.executable, "-m", "mimamori", "run", f"--port={port}"], environment, [port, mailbox])


def _assert_refused(outcome: Outcome, status: int, line: str) -> None:
    assert outcome.status == status, outcome.stderr
    assert outcome.lines[-1].startswith(f"mimamori: {line}"), outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert outcome.listened == set(), "a port was opened"


CONFIGURATIONS = {
    "broker-with-sqlite": (
        {"BROKER_URL": "redis://127.0.0.1:6379/0"},
        "BROKER_URL is set (distributed mode), which needs PostgreSQL: set DATABASE_URL=postgres://",
    ),
    "broker-not-rabbitmq-or-redis": (
        {"BROKER_URL": "rabbit.example:5672", "DATABASE_URL": "postgres://mimamori@db.invalid/mimamori"},
        "BROKER_URL must be a RabbitMQ or Redis URL",
    ),
    "relay-scheme": ({"EMAIL_URL": "http://relay.example"}, "EMAIL_URL must be the relay as smtp://host:25"),
    "relay-without-host": ({"EMAIL_URL": "smtp://:25"}, "EMAIL_URL must be the relay as smtp://host:25"),
    "relay-port-not-a-number": (
        {"EMAIL_URL": "smtp://relay.example:twenty-five"},
        "EMAIL_URL must be the relay as smtp://host:25",
    ),
    "relay-port-too-high": (
        {"EMAIL_URL": "smtp+tls://mimamori:relay-secret@relay.example:99999"},
        "EMAIL_URL must be the relay as smtp://host:25",
    ),
    "base-url-without-scheme": (
        {"BASE_URL": "mimamori.example.jp"},
        "BASE_URL must be the site's public address with http:// or https://",
    ),
    "base-url-not-http": (
        {"BASE_URL": "ftp://mimamori.example.jp"},
        "BASE_URL must be the site's public address with http:// or https://",
    ),
    "database-neither-postgresql-nor-sqlite": (
        {"DATABASE_URL": "mysql://mimamori@db.example/mimamori"},
        "DATABASE_URL must be a PostgreSQL or SQLite URL",
    ),
}


@pytest.mark.parametrize("case", CONFIGURATIONS.keys())
def test_run_refuses_a_configuration_that_cannot_work(tmp_path: Path, case: str) -> None:
    values, line = CONFIGURATIONS[case]

    outcome = _run(tmp_path, **values)

    _assert_refused(outcome, startup.CONFIGURATION, line)
    assert len(outcome.lines) == 1, outcome.stderr
    assert "relay-secret" not in outcome.stderr  # a password is never printed
    assert not (tmp_path / "data" / "mimamori.sqlite3").exists()  # nothing was migrated


def test_run_gives_up_on_a_database_that_does_not_answer(tmp_path: Path) -> None:
    away = free_port()  # nothing listens there

    outcome = _run(
        tmp_path, DATABASE_URL=f"postgres://mimamori:db-secret@127.0.0.1:{away}/mimamori", SECRET_KEY="x"
    )

    _assert_refused(
        outcome,
        startup.UNREACHABLE,
        f"could not connect to the database at 127.0.0.1:{away}/mimamori within 1 s (",
    )
    assert "start it, or set DATABASE_URL" in outcome.lines[-1]
    assert "db-secret" not in outcome.stderr


@contextlib.contextmanager
def _throwaway_database() -> Iterator[str]:
    """A database of this test's own on the suite's PostgreSQL server, dropped afterwards."""
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = f"mm_startup_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.skipif(
    not POSTGRES, reason="distributed mode needs PostgreSQL (the PostgreSQL run of the suite)"
)
def test_run_gives_up_on_a_broker_that_does_not_answer(tmp_path: Path) -> None:
    away = free_port()
    with _throwaway_database() as database:
        outcome = _run(
            tmp_path,
            DATABASE_URL=database,
            SECRET_KEY="x",
            BROKER_URL=f"amqp://mimamori:broker-secret@127.0.0.1:{away}//",
        )

    _assert_refused(
        outcome,
        startup.UNREACHABLE,
        f"could not connect to the broker at amqp://mimamori:***@127.0.0.1:{away}// within 1 s (",
    )
    assert "broker-secret" not in outcome.stderr


def test_a_worker_refuses_too(tmp_path: Path) -> None:
    """`mimamori worker` on its own, as systemd starts it: the same lines and statuses."""
    worker = [sys.executable, "-m", "mimamori", "worker"]

    configuration = _start(worker, _environment(tmp_path, BROKER_URL="redis://127.0.0.1:6379/0"), [])
    away = free_port()
    database = _start(
        worker,
        _environment(tmp_path, DATABASE_URL=f"postgres://mimamori@127.0.0.1:{away}/mimamori", SECRET_KEY="x"),
        [],
    )

    _assert_refused(configuration, startup.CONFIGURATION, "BROKER_URL is set (distributed mode)")
    _assert_refused(
        database,
        startup.UNREACHABLE,
        f"could not connect to the database at 127.0.0.1:{away}/mimamori within 1 s",
    )


@pytest.mark.skipif(
    not POSTGRES, reason="distributed mode needs PostgreSQL (the PostgreSQL run of the suite)"
)
def test_a_celery_worker_gives_up_on_a_broker_that_does_not_answer(tmp_path: Path) -> None:
    away = free_port()
    with _throwaway_database() as database:
        outcome = _start(
            [sys.executable, "-m", "mimamori", "worker"],
            _environment(
                tmp_path, DATABASE_URL=database, SECRET_KEY="x", BROKER_URL=f"redis://127.0.0.1:{away}/0"
            ),
            [],
        )

    _assert_refused(
        outcome,
        startup.UNREACHABLE,
        f"could not connect to the broker at redis://127.0.0.1:{away}/0 within 1 s (",
    )


@pytest.mark.parametrize("preload", [False, True], ids=["gunicorn", "gunicorn-preload"])
def test_the_web_application_under_gunicorn_refuses_and_gunicorn_stops(tmp_path: Path, preload: bool) -> None:
    """A gunicorn worker that exited with any status but 3 or 4 would be started again, forever.
    Without --preload gunicorn's master has opened its port before its worker loads the
    application (one worker: when several fail at the same moment, gunicorn 27 itself may end
    with status 1 and a traceback of its own); with --preload the application is loaded first,
    and the port is never opened."""
    port = free_port()
    workers = "--workers=2" if preload else "--workers=1"
    command = [GUNICORN, "mimamori.wsgi", f"--bind=127.0.0.1:{port}", workers, "--no-control-socket"]

    outcome = _start(
        [*command, *(["--preload"] if preload else [])],
        _environment(tmp_path, BASE_URL="mimamori.example.jp"),
        [port] if preload else [],
    )

    assert outcome.status == startup.CONFIGURATION, outcome.stderr
    ours = [line for line in outcome.lines if line.startswith("mimamori: ")]
    assert len(ours) == 1, outcome.stderr  # said once: the worker was not started again
    assert ours[0].startswith("mimamori: BASE_URL must be the site's public address"), outcome.stderr
    assert "Traceback" not in outcome.stderr
    if preload:
        assert outcome.listened == set()
        assert outcome.lines == ours, "nothing else was started"


@pytest.mark.slow
@pytest.mark.skipif(not POSTGRES, reason="a private PostgreSQL server (the PostgreSQL run of the suite)")
def test_run_stops_when_its_workers_cannot_start(tmp_path: Path) -> None:
    """A private PostgreSQL server that takes one connection at a time: `mimamori run` holds it
    (it migrated), so its workers find no free connection, give up after the wait, and run
    stops everything and exits with their reason instead of serving a site that cannot send."""
    from bench.pgserver import PrivatePostgres, available

    if not available():
        pytest.skip("needs PostgreSQL's server binaries (initdb, pg_ctl)")

    server = PrivatePostgres()
    server.options += " -c max_connections=1 -c superuser_reserved_connections=0"
    try:
        server.start()
        port, mailbox = free_port(), free_port()
        outcome = _start(
            [sys.executable, "-m", "mimamori", "run", f"--port={port}", "--workers=1"],
            _environment(
                tmp_path, DATABASE_URL=server.url(), SECRET_KEY="x", MIMAMORI_DEVMAIL_PORT=str(mailbox)
            ),
            [port],
        )
    finally:
        server.remove()

    _assert_refused(
        outcome,
        startup.UNREACHABLE,
        "a background worker could not start: could not connect to the database at ",
    )
    assert "too many clients" in outcome.lines[-1], outcome.stderr
    assert "mimamori is running" not in outcome.stdout
    assert "mimamori stopped." in outcome.stdout

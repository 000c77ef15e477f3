"""A PostgreSQL server of one's own, for the drills that stop or restart PostgreSQL.

initdb in a temporary directory, the server on a free port of 127.0.0.1 (and its socket in that
directory), trust authentication for the user ``postgres``; removed with its directory at the
end. Stopping or restarting it disturbs nobody: the machine's own PostgreSQL service, which other
checkouts, demos and test runs share, is never stopped or restarted by a test or a bench
(bench/drills.py's postgres-restart drill, tests/test_drills.py, tests/test_outage.py).

Needs Debian's server binaries (/usr/lib/postgresql/<version>/bin: the postgresql package), not
a running service. initdb and postgres refuse to run as root, so as root they run as the
``postgres`` user (runuser).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _server_binaries() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb, if any."""
    found = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "initdb").exists()]
    versions = sorted(found, key=lambda path: [int(p) for p in path.parent.name.split(".") if p.isdigit()])
    return versions[-1] if versions else None


PG_BIN = _server_binaries()


def available() -> bool:
    return PG_BIN is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivatePostgres:
    """A PostgreSQL server in a temporary directory, on a free port; ``start()`` it, then ``url``."""

    def __init__(self, prefix: str = "mimamori-pg-", fsync: bool = False) -> None:
        if PG_BIN is None:
            raise FileNotFoundError("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin/initdb)")
        self.bin = PG_BIN
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.directory / "data"
        self.log = self.directory / "log"
        self.port = _free_port()
        # fsync off: a scratch server whose data nobody needs after a crash of the machine.
        self.options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        if not fsync:
            self.options += " -c fsync=off"
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            account = pwd.getpwnam(self.user)
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def command(self, program: str, *arguments: str) -> list[str]:
        """The command line running one of the server's programs (as ``postgres`` when root)."""
        command = [str(self.bin / program), *arguments]
        return ["runuser", "-u", self.user, "--", *command] if self.user else command

    def _run(self, program: str, *arguments: str) -> None:
        subprocess.run(self.command(program, *arguments), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", self.options)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def restart_command(self) -> list[str]:
        """Stop (fast: sessions are cut, as a service restart cuts them) and start again."""
        return self.command(
            "pg_ctl", "restart", "-w", "-m", "fast",
            "-D", str(self.data), "-l", str(self.log), "-o", self.options,
        )  # fmt: skip

    def restart(self) -> None:
        subprocess.run(self.restart_command(), check=True, capture_output=True, timeout=120)

    def running(self) -> bool:
        status = subprocess.run(
            self.command("pg_ctl", "status", "-D", str(self.data)), capture_output=True, timeout=60
        )
        return status.returncode == 0

    def ensure_running(self) -> None:
        """Start the server if a drill left it stopped."""
        if not self.running():
            self.start()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if self.running():
                self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(prefix: str = "mimamori-pg-", fsync: bool = False) -> Iterator[PrivatePostgres]:
    """A started PrivatePostgres, stopped and removed on the way out whatever happened."""
    server = PrivatePostgres(prefix, fsync=fsync)
    try:
        server.start()
        yield server
    finally:
        server.remove()


def postmaster_start(url: str) -> str:
    """pg_postmaster_start_time() of the server at ``url``: it changes when the server restarts."""
    import psycopg

    with psycopg.connect(url, connect_timeout=10) as connection:
        row = connection.execute("SELECT pg_postmaster_start_time()::text").fetchone()
    assert row is not None
    return str(row[0])

"""What cannot work is refused when a process starts, in one line that says what to set.

Two kinds of refusal, each with its own exit status (docs/operations.md, "Refused at start"):

- CONFIGURATION (4): the settings refused a value (mimamori/settings.py and mimamori/env.py
  raise ImproperlyConfigured with one sentence). Every `mimamori` command and the web
  application (mimamori.wsgi) load the settings through settings_or_exit() first. 4 is also a
  status gunicorn's master stops on when a worker exits with it ("App failed to load"); with any
  status but 3 and 4 gunicorn would start the worker again, forever.
- UNREACHABLE (3): the database, or the broker, did not answer within
  MIMAMORI_START_WAIT_SECONDS (tried again and again with growing pauses meanwhile), or
  refused the connection all that time (too many connections, a wrong password).
  `mimamori run` and `mimamori worker` wait for what they need before they open a port or take
  work; the web application does not: with the database away it answers the 503 page, which is
  what the proxy in front should see.

The line goes to standard error as ``mimamori: <what is wrong and what to set>``; nothing else
is printed but one warning while waiting, and no traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from django.core.exceptions import ImproperlyConfigured

from mimamori import env

log = logging.getLogger("mimamori.startup")

UNREACHABLE = 3
CONFIGURATION = 4

# One attempt to connect never takes longer than this, so the wait ends on time.
ATTEMPT_SECONDS = 5.0


class Refused(Exception):
    """The process must not start: ``line`` says why and what to set; ``status`` is the exit status."""

    def __init__(self, line: str, status: int) -> None:
        # One line, whatever the message held (a driver's error may span several).
        self.line = " ".join(line.split())
        self.status = status
        super().__init__(self.line)


def exit_refused(refused: Refused) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"mimamori: {refused.line}\n")
    sys.stderr.flush()
    raise SystemExit(refused.status)


def settings_or_exit() -> None:
    """Load the settings; a value they refuse ends the process with its one line and status 4."""
    from django.conf import settings

    try:
        settings.INSTALLED_APPS  # noqa: B018  (the first access imports mimamori.settings)
    except ImproperlyConfigured as error:
        exit_refused(Refused(str(error), CONFIGURATION))


def _pauses(seconds: float) -> list[float]:
    """The pauses between attempts within ``seconds``: 0.5 s, doubling, at most 5 s each."""
    pauses, pause, total = [], 0.5, 0.0
    while total < seconds:
        pauses.append(min(pause, seconds - total))
        total += pauses[-1]
        pause = min(pause * 2, 5.0)
    return pauses


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _database_error() -> str | None:
    """None when the database answers now, else what went wrong (one line)."""
    from django.db import DatabaseError, connections

    connection = connections["default"]
    parameters = connection.get_connection_params()
    if connection.vendor == "postgresql":
        parameters["connect_timeout"] = max(1, round(ATTEMPT_SECONDS))
    try:
        with connection.wrap_database_errors:
            raw = connection.get_new_connection(parameters)
            try:
                raw.cursor().execute("SELECT 1")
            finally:
                raw.close()
    except DatabaseError as error:
        return _one_line(error)
    return None


def _broker_error() -> str | None:
    """None when the broker (settings.BROKER_URL) accepts a connection now, else what went wrong."""
    from django.conf import settings
    from kombu import Connection

    try:
        with Connection(settings.BROKER_URL, connect_timeout=ATTEMPT_SECONDS) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=ATTEMPT_SECONDS)
            channel = connection.default_channel
            client = getattr(channel, "client", None)  # Redis: the connection is made by the first command
            if client is not None:
                client.ping()
    except Exception as error:  # any transport's error is a reason not to start
        return _one_line(error)
    return None


def _wait(what: str, address: str, error_now: Callable[[], str | None], advice: str) -> None:
    from django.conf import settings

    seconds = settings.MIMAMORI_START_WAIT_SECONDS
    error = error_now()
    if error is None:
        return
    log.warning("cannot connect to %s at %s (%s); trying again for up to %s s", what, address, error, seconds)
    for pause in _pauses(seconds):
        time.sleep(pause)
        error = error_now()
        if error is None:
            return
    raise Refused(
        f"could not connect to {what} at {address} within {seconds} s ({error}): {advice}", UNREACHABLE
    )


def wait_for_services() -> None:
    """Wait for the database, then the broker if BROKER_URL is set; Refused (3) if one stays away."""
    from django.conf import settings
    from django.db import connections

    database = connections["default"].settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        address = str(database["NAME"])
    else:
        address = f"{database['HOST'] or 'localhost'}:{database['PORT'] or 5432}/{database['NAME']}"
    _wait(
        "the database",
        address,
        _database_error,
        "start it, or set DATABASE_URL (and MIMAMORI_START_WAIT_SECONDS to wait longer).",
    )
    if settings.BROKER_URL:
        _wait(
            "the broker",
            env.redacted(settings.BROKER_URL),
            _broker_error,
            "start it, or set BROKER_URL (and MIMAMORI_START_WAIT_SECONDS to wait longer).",
        )


READY = "ready"


class Report:
    """A worker's word to the `mimamori run` that started it, on the pipe run gave it (--ready-fd):
    ``ready`` once its start-up checks passed, or the line of its refusal. Without a pipe a
    refusal is printed as usual."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.lock = threading.Lock()

    def ready(self) -> None:
        self._send(READY)

    def refused(self, refused: Refused) -> NoReturn:
        if self.fd is None:
            exit_refused(refused)
        self._send(refused.line)
        raise SystemExit(refused.status)

    def _send(self, text: str) -> None:
        with self.lock:
            fd, self.fd = self.fd, None
        if fd is None:
            return
        # OSError: run has gone (the worker follows it, --parent-pid).
        with contextlib.suppress(OSError):
            os.write(fd, f"{text}\n".encode())
        with contextlib.suppress(OSError):
            os.close(fd)


def read_report(fd: int) -> str:
    """What a worker said on its pipe by the time it closed it (or exited): READY, a refusal, or ''."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode(errors="replace").strip()

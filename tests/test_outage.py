"""Database outage drill (issue 13, item 5): the site answers 503 while PostgreSQL is away, and
nothing is lost.

A private PostgreSQL (bench/pgserver.py: initdb in a temporary directory, its own port) is
started for this test alone, so stopping it disturbs nobody: never the machine's own PostgreSQL
service. `mimamori run --demo` serves the demo data from it with its workers; a broadcast to
every demo guardian is accepted, PostgreSQL is stopped mid-delivery, the pages and the API are
asked, PostgreSQL is started again, and every target must get the mail exactly once. PostgreSQL
runs of the suite only (on SQLite it is skipped, like the other tests with processes of their own).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import pgserver
from tests.mailsink import Sink, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
        reason="the drill is part of the PostgreSQL run",
    ),
    pytest.mark.skipif(
        not pgserver.available(), reason="needs PostgreSQL's server binaries (initdb, pg_ctl)"
    ),
]


class SlowSink(Sink):
    """The test sink, 20 ms a mail, so that delivery is still under way when PostgreSQL stops."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(0.02)
        return await super().handle_DATA(server, session, envelope)


# Straight to the loopback site, whatever proxy the environment names.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """Status, headers and body of a GET; status 0 while nothing listens yet."""
    request = urllib.request.Request(url, headers={"Accept-Language": "ja", **(headers or {})})  # noqa: S310
    try:
        with _OPENER.open(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()
    except urllib.error.URLError:
        return 0, {}, ""


def _until(condition: object, what: str, seconds: float = 120) -> None:
    """Wait for ``condition()``; the deadline only bounds a broken run, it is no measurement."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.5)


SETUP = """
from mimamori.accounts.models import ApiToken, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import Municipality
centre = User.objects.get(username="centre")
scope = resolve_scope(centre, municipality_codes=Municipality.objects.values_list("code", flat=True))
broadcast = sending.compose(centre, subject="停電訓練", body="訓練です。", scope=scope)
sending.send(broadcast, by=centre)
print(broadcast.pk, ApiToken.issue(centre)[1])
"""

OUTCOME = """
import json
from mimamori.broadcasts.models import Broadcast, Delivery
broadcast = Broadcast.objects.get(pk={pk})
rows = list(Delivery.objects.filter(broadcast=broadcast).values_list("email", "status"))
print(json.dumps({{"status": broadcast.status, "rows": rows}}))
"""


def test_pages_answer_503_while_postgresql_is_away_and_no_mail_is_lost(tmp_path: Path) -> None:
    sink = SlowSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    with pgserver.private_postgres("mimamori-outage-") as database:
        environment = {
            **{k: v for k, v in os.environ.items() if k not in {"BROKER_URL", "BASE_URL", "DEBUG"}},
            "DATABASE_URL": database.url(),
            "SECRET_KEY": "outage-drill-secret-key-only-for-this-test-0123456789",
            "EMAIL_URL": f"smtp://127.0.0.1:{controller.port}",
            "MIMAMORI_DATA_DIR": str(tmp_path),
            "MIMAMORI_SWEEP_SECONDS": "1",
            "MIMAMORI_RETRY_BASE_SECONDS": "1",
            # A task keeps what the relay accepted for two thirds of this while PostgreSQL is away
            # (broadcasts/delivery.py); the outage below lasts a few seconds.
            "MIMAMORI_DELIVERY_LEASE_SECONDS": "60",
            "PYTHONUNBUFFERED": "1",
        }

        def mimamori(*arguments: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "mimamori", *arguments],
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr[-3000:]
            return done.stdout

        log = (tmp_path / "run.log").open("wb")
        run = subprocess.Popen(
            [sys.executable, "-m", "mimamori", "run", "--demo", f"--port={port}", "--workers=1"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        try:
            _until(lambda: _get(f"{site}/healthz/database")[0] == 200, "the site on the private database")
            _until(
                lambda: (
                    "centre"
                    in mimamori(
                        "shell",
                        "-c",
                        "from mimamori.accounts.models import User; "
                        "print(*User.objects.values_list('username', flat=True))",
                    )
                ),
                "the demo data",
            )
            pk, token = mimamori("shell", "-c", SETUP).splitlines()[-1].split()
            api = {"Authorization": f"Bearer {token}"}
            assert _get(f"{site}/api/v1/schools", api)[0] == 200
            _until(lambda: len(sink.messages) > 0, "the first mails")

            database.stop()

            status, headers, body = _get(f"{site}/portal/login/")
            assert status == 503
            assert "ただいまご利用いただけません" in body
            assert "受け付け済みのメールは失われません" in body
            assert headers["Retry-After"] == "30"
            assert "no-store" in headers["Cache-Control"]
            assert "Content-Security-Policy" in headers
            status, headers, body = _get(f"{site}/portal/", {"Cookie": "sessionid=somebody"})
            assert status == 503  # the session lookup fails first
            status, headers, body = _get(f"{site}/api/v1/schools", api)
            assert status == 503
            assert headers["Content-Type"].startswith("application/json")
            assert json.loads(body) == {
                "detail": "現在、サービスを一時的に利用できません。数分後にもう一度お試しください。"
            }
            assert headers["Retry-After"] == "30"
            assert _get(f"{site}/healthz")[0] == 200  # the process serves; the proxy keeps it
            assert _get(f"{site}/healthz/database")[:3:2] == (503, "database unavailable")

            database.start()

            # Each web thread answers one more 503 on the connection it kept, then reconnects.
            _until(lambda: _get(f"{site}/portal/login/")[0] == 200, "the pages after the restart")
            _until(lambda: _get(f"{site}/api/v1/schools", api)[0] == 200, "the API after the restart")
            _until(lambda: _get(f"{site}/healthz/database")[0] == 200, "the health check after the restart")

            def finished() -> bool:
                return (
                    json.loads(mimamori("shell", "-c", OUTCOME.format(pk=pk)).splitlines()[-1])["status"]
                    != "sending"
                )

            _until(finished, "the broadcast to finish", seconds=300)
            outcome = json.loads(mimamori("shell", "-c", OUTCOME.format(pk=pk)).splitlines()[-1])
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGTERM)
                run.wait(timeout=60)
            log.close()
            controller.stop()
    targets = [email for email, _status in outcome["rows"]]
    assert len(targets) > 50, outcome
    assert {status for _email, status in outcome["rows"]} == {"accepted"}, outcome
    copies = sink.copies()
    assert sorted(copies) == sorted(targets)  # every target got the mail
    # What the relay accepted before PostgreSQL stopped was kept by the task and written when it
    # was back, so nothing went twice.
    assert set(copies.values()) == {1}, {address: n for address, n in copies.items() if n > 1}
    print(f"{len(targets)} targets, each got the mail once")

"""Issue 4 load acceptance: 2,000 concurrent confirmations for different registrants, each sent
twice at once, against the production web server (waitress) on PostgreSQL: all stored, none
lost, none counted twice."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Sum

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, BroadcastStatus, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.models import Receipt
from tests.cast import make_school, make_staff
from tests.mailsink import free_port
from tests.tasks import fan_out_everything
from tests.test_engines import _database_url, bulk_registrants

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REGISTRANTS = 2000


def _serve(port: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SECRET_KEY": "load-test-secret",
        "MIMAMORI_DATA_DIR": str(tmp_path),
        "EMAIL_URL": "smtp://127.0.0.1:1",
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "waitress",
            f"--listen=127.0.0.1:{port}",
            "--threads=16",
            "mimamori.wsgi:application",
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _post(port: int, token: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", f"/c/{token}/", body=b"", headers={"Content-Length": "0"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_two_thousand_concurrent_confirmations_are_all_stored_once(tmp_path: Path) -> None:
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        pytest.skip("the web server process needs the PostgreSQL test database")
    school = make_school()
    bulk_registrants(school, REGISTRANTS, "load")
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject="s", body="b", scope=resolve_scope(staff), request_confirmation=True
    )
    # Fanned out without the workers: the links exist, which is all this test needs.
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.SENDING)
    fan_out_everything(broadcast)
    tokens = [
        t
        for t in Delivery.objects.filter(broadcast=broadcast).values_list("confirmation_token", flat=True)
        if t
    ]
    assert len(tokens) == REGISTRANTS

    port = free_port()
    server = _serve(port, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                probe.connect()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            finally:
                probe.close()
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=64) as pool:
            # Every link twice, the two copies at the same moment: a double-tap on a phone.
            statuses = list(pool.map(lambda t: _post(port, t), [t for t in tokens for _ in range(2)]))
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(timeout=20)

    print(f"\n{len(statuses)} confirmation POSTs in {elapsed:.1f} s ({len(statuses) / elapsed:.0f}/s)")
    assert set(statuses) <= {200, 303}, sorted(set(statuses))
    assert Receipt.objects.filter(broadcast=broadcast).count() == REGISTRANTS
    assert Receipt.objects.filter(broadcast=broadcast).values("registrant").distinct().count() == REGISTRANTS
    assert AudienceGroup.objects.filter(broadcast=broadcast).aggregate(n=Sum("confirmed"))["n"] == REGISTRANTS

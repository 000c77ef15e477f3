"""The demo data and `mimamori run`: one machine, everything started, everything stopped."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, RequestFactory

from mimamori.accounts.models import Role, User
from mimamori.registry import demo
from mimamori.registry.addresses import normalise_address
from mimamori.registry.models import Address, Municipality, Registrant, RegistrantStatus, School


@pytest.mark.django_db
def test_demo_has_the_seeds_three_municipalities_with_differing_settings() -> None:
    summary = demo.load_demo()

    assert summary.created
    cities = {m.code: m for m in Municipality.objects.all()}
    assert {c: m.name for c, m in cities.items()} == {
        "iwamizawa": "岩見沢市",
        "takikawa": "滝川市",
        "yubari": "夕張市",
    }
    assert cities["iwamizawa"].mail_domain == "mail.mimamori-iwamizawa.jp"
    assert cities["yubari"].confirmation_links_enabled is False
    assert cities["takikawa"].maintenance_notice_lead_hours == 48
    assert cities["iwamizawa"].maintenance_notice_lead_hours == 72
    assert all(m.support_phone.startswith("0120-") and m.support_name for m in cities.values())
    for city in cities.values():
        assert 3 <= city.schools.count() <= 4
    midori = School.objects.get(sender_local_part="midori-sho")
    assert midori.sender_address == "midori-sho@mail.mimamori-iwamizawa.jp"
    assert summary.registrants == Registrant.objects.count() > 200


@pytest.mark.django_db
def test_demo_registrants_look_like_a_real_roster() -> None:
    demo.load_demo()

    registrants = Registrant.objects.all()
    assert {r.grade for r in registrants} == {1, 2, 3, 4, 5, 6}
    assert {r.class_name for r in registrants} == {"1", "2", "3"}
    assert registrants.filter(status=RegistrantStatus.DEREGISTERED).exists()
    assert registrants.filter(receive_broadcasts=False).exists()
    assert all(re.fullmatch(r"[ぁ-ゖー]+ [ぁ-ゖー]+", r.child_name_kana) for r in registrants)
    emails = list(Address.objects.values_list("email", flat=True))
    # Every address would pass the guardian form's own rules.
    assert all(normalise_address(e) == e for e in emails)
    domains = {e.split("@")[1] for e in emails}
    assert {"docomo.ne.jp", "ezweb.ne.jp", "softbank.ne.jp", "gmail.com", "icloud.com"} <= domains
    per_registrant = {r.pk: r.addresses.count() for r in registrants.filter(registration_code_digest="")}
    assert set(per_registrant.values()) == {1, 2, 3, 4}


@pytest.mark.django_db
def test_demo_logins_work() -> None:
    summary = demo.load_demo()

    def login(username: str) -> bool:
        # django-axes wants the request it counts failures against.
        request = RequestFactory().post("/")
        return Client().login(request=request, username=username, password=demo.DEMO_PASSWORD)

    for username in ("centre", "iwamizawa", "midori", demo.GUARDIAN_LOGIN_ID):
        assert login(username), username
    assert User.objects.get(username="midori").school == School.objects.get(sender_local_part="midori-sho")
    assert User.objects.get(username="iwamizawa").role == Role.MUNICIPALITY
    guardian = Registrant.objects.get(account__username=demo.GUARDIAN_LOGIN_ID)
    assert guardian.school.sender_local_part == "midori-sho"
    assert all(guardian.addresses_by_slot()[slot] for slot in (1, 2))

    pending = Registrant.objects.get(account__username=demo.PENDING_LOGIN_ID)
    assert not login(demo.PENDING_LOGIN_ID)
    assert summary.registration_code is not None
    assert pending.registration_code_matches(summary.registration_code)
    text = "\n".join(summary.lines())
    for shown in (demo.PENDING_LOGIN_ID, summary.registration_code, "centre", "midori"):
        assert shown in text


@pytest.mark.django_db
def test_loading_the_demo_twice_changes_nothing() -> None:
    first = demo.load_demo()
    counts = (User.objects.count(), Registrant.objects.count(), Address.objects.count())

    second = demo.load_demo()

    assert not second.created
    assert (User.objects.count(), Registrant.objects.count(), Address.objects.count()) == counts
    assert second.registrants == first.registrants


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_run_serves_site_and_mailbox_then_stops_everything(tmp_path: Path) -> None:
    port, smtp_port = _free_port(), _free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "EMAIL_URL", "BROKER_URL", "BASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    # A fresh SQLite database in tmp_path, whatever database the rest of the suite uses.
    environment |= {
        "MIMAMORI_DATA_DIR": str(tmp_path),
        "MIMAMORI_DEVMAIL_PORT": str(smtp_port),
        "PYTHONUNBUFFERED": "1",
    }
    command = [str(Path(sys.executable).parent / "mimamori"), "run", "--demo", f"--port={port}"]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    stdout = process.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    output: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while not any("Ctrl-C" in line for line in output):
            assert process.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        text = "".join(output)
        site = re.search(r"Site:\s+(\S+)", text)
        assert site is not None
        assert site.group(1) == f"http://127.0.0.1:{port}/"
        for shown in (
            "10000001",
            "DEMA-2345-6789",
            "/portal/",
            f"/console/mailbox/ (SMTP on 127.0.0.1:{smtp_port})",
        ):
            assert shown in text
        general = re.search(r"Background workers:\s+pids ([\d, ]+) \(all queues\)", text)
        assert general is not None
        worker_pids = [int(pid) for pid in general.group(1).split(", ")]
        assert len(worker_pids) == 2 * (os.cpu_count() or 1)
        urgent = re.search(r"Urgent worker:\s+pid (\d+)", text)
        assert urgent is not None
        worker_pids.append(int(urgent.group(1)))
        assert set(worker_pids) <= set(_children(process.pid))

        try:
            status = urllib.request.urlopen(site.group(1) + "portal/login/", timeout=10).status  # noqa: S310
        except urllib.error.HTTPError as error:  # the portal may not exist yet
            status = error.code
        assert status in (200, 404)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            assert smtp.noop()[0] == 250
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
        reader.join(timeout=5)
        stdout.close()

    assert code == 0, "".join(output)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in worker_pids if _alive(pid)], "a worker outlived mimamori run"


def test_under_mimamori_run_on_sqlite_the_first_chunk_leaves_while_the_rest_cannot_be_written(
    tmp_path: Path, settings: Any
) -> None:
    """The users' path on a fresh SQLite installation: a roster imported, a normal broadcast
    sent through the API. Writing the second slice fails (a trigger refuses one child's
    recipient row, as a crash would cut it off): the first chunk is delivered all the same,
    and once the trigger is gone the sweep has the fan-out carry on, each mail sent once.
    (On PostgreSQL, tests/test_engines.py holds the slice back with a lock instead.)"""
    import sqlite3

    from aiosmtpd.controller import Controller

    from bench.users import Installation
    from tests.mailsink import Sink

    if not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        pytest.skip("the SQLite run of the suite covers it (the installation has its own database)")
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    database = tmp_path / "mimamori.sqlite3"
    installation = Installation(
        f"sqlite:///{database}",
        tmp_path,
        f"smtp://127.0.0.1:{controller.port}",
        ("MIMAMORI_DELIVERY_LEASE_SECONDS", "2"),
        ("MIMAMORI_SWEEP_SECONDS", "1"),
    )
    try:
        installation.command("migrate", "-v0")
        with installation.running():
            installation.sign_in_as_centre()
            [school] = installation.create_city("bench", 1)
            installation.import_roster(school, 1000)
            with sqlite3.connect(database) as db:
                [(last,)] = db.execute(
                    "SELECT registrant_id FROM registry_address WHERE slot = 1"
                    " ORDER BY lower(email) DESC LIMIT 1"
                )
                db.execute(
                    "CREATE TRIGGER held BEFORE INSERT ON broadcasts_recipient"
                    f" WHEN NEW.registrant_id = {int(last)} BEGIN SELECT RAISE(ABORT, 'held back'); END"
                )
            broadcast = installation.broadcast("bench", urgent=False, subject="遠足のお知らせ", body="本文")
            deadline = time.monotonic() + 60
            while len(sink.copies()) < 500:
                assert time.monotonic() < deadline, "the first chunk did not leave"
                time.sleep(0.1)
            time.sleep(2)  # time enough for the second slice to be tried, and refused, again
            with sqlite3.connect(database) as db:
                [(fanned_out, written)] = db.execute(
                    "SELECT b.fanned_out_at, (SELECT COUNT(*) FROM broadcasts_delivery d"
                    " WHERE d.broadcast_id = b.id) FROM broadcasts_broadcast b WHERE b.id = ?",
                    [broadcast],
                )
                assert (fanned_out, written, len(sink.copies())) == (None, 500, 500)
                db.execute("DROP TRIGGER held")
            while installation.status(broadcast)["status"] != "sent":
                assert time.monotonic() < deadline + 60, installation.status(broadcast)
                time.sleep(0.2)
    finally:
        controller.stop()
    copies = sink.copies()
    assert len(copies) == 1000
    assert set(copies.values()) == {1}


REPOSITORY = Path(__file__).resolve().parents[1]


class Demo:
    """One `make run PORT=…` in a process group of its own (Ctrl-C in a terminal reaches the group)."""

    def __init__(self, port: int, environment: dict[str, str]) -> None:
        self.port = port
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "-C", str(REPOSITORY), "run", f"PORT={port}"],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    @property
    def text(self) -> str:
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)

    def wait_until_running(self, deadline: float) -> None:
        while "Press Ctrl-C to stop." not in self.text:
            assert self.process.poll() is None, self.text
            assert time.monotonic() < deadline, self.text
            time.sleep(0.2)

    def shown(self, pattern: str) -> str:
        found = re.search(pattern, self.text)
        assert found is not None, (pattern, self.text)
        return found.group(1)

    def interrupt(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)

    def wait(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.mark.skipif(
    os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="the SQLite run of the suite covers it (each demo has a database of its own)",
)
@pytest.mark.skipif(
    shutil.which("uv") is None and not (REPOSITORY / ".tools" / "bin" / "uv").exists(),
    reason="`make run` needs uv (`make install` provides it)",
)
def test_two_make_run_demos_run_side_by_side() -> None:
    """`make run PORT=…` twice on one machine: each serves its own site, each has its own data
    directory (./var/port-N) and its own development mailbox, on the port + 25 or, when that is
    taken (here, for the first), on a free one that it prints. Ctrl-C stops each, workers and all."""
    first, second = _free_port(), _free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "DATABASE_URL",
            "EMAIL_URL",
            "BROKER_URL",
            "BASE_URL",
            "DJANGO_SETTINGS_MODULE",
            "MIMAMORI_DATA_DIR",
            "MIMAMORI_DEVMAIL_PORT",
            "PORT",
        }
    }
    environment["PYTHONUNBUFFERED"] = "1"
    taken = socket.socket()
    with contextlib.suppress(OSError):  # if something else holds it, it is taken all the same
        taken.bind(("127.0.0.1", first + 25))
        taken.listen()
    demos = [Demo(first, environment), Demo(second, environment)]
    directories = [REPOSITORY / "var" / f"port-{demo.port}" for demo in demos]
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, whatever the proxy
    worker_pids: list[int] = []
    try:
        deadline = time.monotonic() + 180
        for demo in demos:
            demo.wait_until_running(deadline)
        for demo, directory in zip(demos, directories, strict=True):
            assert demo.shown(r"Site:\s+(\S+)") == f"http://127.0.0.1:{demo.port}/"
            assert Path(demo.shown(r"Data directory:\s+(\S+)")) == directory
            worker_pids += [
                int(pid) for pid in demo.shown(r"Background workers:\s+pids ([\d, ]+) ").split(", ")
            ]
            with direct.open(f"http://127.0.0.1:{demo.port}/", timeout=30) as answer:
                assert answer.status == 200
                assert answer.url.endswith("/portal/")  # / leads to the guardian site
        mailboxes = [int(demo.shown(r"\(SMTP on 127\.0\.0\.1:(\d+)\)")) for demo in demos]
        assert mailboxes[1] == second + 25
        assert mailboxes[0] not in (first + 25, mailboxes[1])
        for demo, mailbox in zip(demos, mailboxes, strict=True):
            with smtplib.SMTP("127.0.0.1", mailbox, timeout=10) as smtp:
                smtp.sendmail(
                    "test@example.jp", [f"demo-{demo.port}@example.jp"], b"Subject: side by side\r\n\r\nx\r\n"
                )
        for demo, directory in zip(demos, directories, strict=True):
            stored = "".join(
                path.read_text(errors="replace") for path in (directory / "mailbox" / "new").iterdir()
            )
            assert f"demo-{demo.port}@example.jp" in stored
            others = [d.port for d in demos if d is not demo]
            assert all(f"demo-{port}@example.jp" not in stored for port in others)
    finally:
        taken.close()
        for demo in demos:
            demo.interrupt()
        for demo in demos:
            demo.wait()
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)

    for demo in demos:
        assert "mimamori stopped." in demo.text, demo.text
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in worker_pids if _alive(pid)], "a worker outlived its demo"

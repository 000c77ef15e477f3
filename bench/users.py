"""The users' path, for the benchmarks: what an operator does, with the product's own commands.

A throwaway database; `mimamori run` started as an operator starts it (DATABASE_URL and
EMAIL_URL set, nothing else); a centre login made with `mimamori createstaff` and an API token
with `mimamori apitoken`; municipalities and schools created through the REST API; registrants
imported from generated roster CSVs with `mimamori import-roster`, one file per school; and
broadcasts composed and sent through the REST API.

The rosters have the shape of a real one: grades 1–6, classes 1組–4組, a guardian's address in
slot 1 and a second one (a grandparent, a workplace) in slot 3, spread over the carrier and
free-mail domains guardians use, in CP932-free UTF-8 as Excel's 「CSV UTF-8」 saves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common

PASSWORD = "Yubari-melon-7s!"  # noqa: S105 - a throwaway database's login
DOMAINS = ("docomo.ne.jp", "ezweb.ne.jp", "au.com", "softbank.ne.jp", "i.softbank.jp", "gmail.com")
SCHOOL_SIZE = 10_000  # rows per roster file; more registrants means more schools
HEADER = "学年,組,児童氏名,ふりがな,メールアドレス1,メールアドレス2,メールアドレス3,メールアドレス4"
SURNAMES = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤")
GIVEN = ("太郎", "花子", "翔太", "結衣", "大翔", "陽菜", "蓮", "葵", "湊", "凛")
KANA_SURNAMES = (
    *("さとう", "すずき", "たかはし", "たなか", "いとう"),
    *("わたなべ", "やまもと", "なかむら", "こばやし", "かとう"),
)
KANA_GIVEN = ("たろう", "はなこ", "しょうた", "ゆい", "ひろと", "ひな", "れん", "あおい", "みなと", "りん")


def roster_csv(rows: int, school: int, domains: tuple[str, ...] = DOMAINS) -> str:
    """A school's roster of ``rows`` children, each with slot 1 and slot 3 filled, at ``domains`` in turn."""
    lines = [HEADER]
    for i in range(rows):
        surname, given = i % 10, (i // 10) % 10
        name = f"{SURNAMES[surname]} {GIVEN[given]}{i}"
        kana = f"{KANA_SURNAMES[surname]} {KANA_GIVEN[given]}"
        parent = f"{'mama' if i % 2 else 'papa'}.s{school}n{i}@{domains[i % len(domains)]}"
        other = f"sofubo-s{school}n{i}@{domains[(i + 3) % len(domains)]}"
        lines.append(f"{1 + i % 6}年,{1 + (i // 6) % 4}組,{name},{kana},{parent},,{other},")
    return "\r\n".join(lines) + "\r\n"


class Api:
    """The REST API with a bearer token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback
            f"{self.base_url}/api/v1{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read() or b"null")


@dataclass
class Imported:
    rows: int
    seconds: float
    peak_rss_mb: float


class Installation:
    """`mimamori run` on a database of its own, and what an operator does with it."""

    def __init__(
        self, database_url: str, data_dir: Path, email_url: str, *environment: tuple[str, str]
    ) -> None:
        self.data_dir = data_dir
        self.port = common.free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.environment = dict(
            os.environ,
            DATABASE_URL=database_url,
            MIMAMORI_DATA_DIR=str(data_dir),
            EMAIL_URL=email_url,
            PYTHONUNBUFFERED="1",
            **dict(environment),
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.api: Api | None = None

    def command(self, *arguments: str, stdin: bytes | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mimamori", *arguments],
            env=self.environment,
            cwd=common.ROOT,
            input=stdin,
            capture_output=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"mimamori {' '.join(arguments)}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    @contextlib.contextmanager
    def running(self, *arguments: str) -> Iterator[Installation]:
        """`mimamori run --port P` until the block ends (SIGTERM, as systemd stops it)."""
        log = (self.data_dir / "run.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mimamori", "run", f"--port={self.port}", *arguments],
            env=self.environment,
            cwd=common.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_until_up()
            yield self
        finally:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.close()

    def _wait_until_up(self, timeout: float = 120) -> None:
        """Until the site answers and every worker polls its queue (each logs "Starting worker")."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mimamori run exited; see {self.data_dir / 'run.log'}")
            log = (self.data_dir / "run.log").read_bytes()
            workers = self.worker_pids()
            if b"Press Ctrl-C to stop" in log and workers and log.count(b"Starting worker") >= len(workers):
                return
            time.sleep(0.2)
        raise TimeoutError("mimamori run did not come up")

    def worker_pids(self) -> list[int]:
        """The worker processes `mimamori run` started (its children)."""
        assert self.process is not None
        return _children(self.process.pid)

    def sign_in_as_centre(self) -> Api:
        self.command(
            "createstaff", "bench-centre", "--role=centre", "--password-stdin", stdin=f"{PASSWORD}\n".encode()
        )
        token = self.command("apitoken", "bench-centre").strip()
        self.api = Api(self.base_url, token)
        return self.api

    def create_city(self, code: str, schools: int) -> list[int]:
        assert self.api is not None
        self.api(
            "POST",
            "/municipalities",
            {"code": code, "name": f"ベンチ市{code}", "mail_domain": f"mail.{code}.example.jp"},
        )
        return [
            self.api(
                "POST",
                "/schools",
                {"municipality": code, "name": f"第{n + 1}小学校", "sender_local_part": f"school{n + 1}"},
            )["id"]
            for n in range(schools)
        ]

    def import_roster(self, school_id: int, rows: int, domains: tuple[str, ...] = DOMAINS) -> Imported:
        """`mimamori import-roster` of a generated roster, timed, with the importer's peak RSS."""
        path = self.data_dir / f"roster-{school_id}.csv"
        path.write_text(roster_csv(rows, school_id, domains), encoding="utf-8")
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "mimamori", "import-roster", str(path), f"--school={school_id}"],
            env=self.environment,
            cwd=common.ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise RuntimeError(f"import-roster of {path} failed with status {process.returncode}")
        return Imported(rows, seconds, usage.ru_maxrss / 1024)

    def broadcast(self, code: str, *, urgent: bool, subject: str, body: str) -> int:
        """Compose (with read confirmation) and send one broadcast to a whole municipality."""
        assert self.api is not None
        draft = self.api(
            "POST",
            "/broadcasts",
            {
                "scope": {"municipality": code},
                "subject": subject,
                "body": body,
                "request_confirmation": True,
                "urgent": urgent,
            },
        )
        self.api("POST", f"/broadcasts/{draft['id']}/send")
        return int(draft["id"])

    def status(self, broadcast_id: int) -> dict[str, Any]:
        assert self.api is not None
        return dict(self.api("GET", f"/broadcasts/{broadcast_id}"))


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return sorted(found)

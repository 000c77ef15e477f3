"""Fair sharing across schools (issue 15, item 4): a city-wide urgent broadcast, each school's first mail.

    uv run python -m bench.fairness                                   # 100,000 over 40 schools, PostgreSQL
    uv run python -m bench.fairness --registrants 20000 --schools 40  # smaller, a few minutes
    uv run python -m bench.fairness --runs 3

When a quake fires every school of a city together, each school's guardians should get their
first mails early, not after most of the city's. Rosters are imported per school and addresses
are not random across schools (these rosters even sort by school: ``papa.s{school}n{i}@…``),
so a fan-out in plain address order would give the first chunks to one school.

**Users' path** (bench/users.py): a throwaway PostgreSQL database; `mimamori run` as an
operator starts it, with EMAIL_URL at a relay stand-in on 127.0.0.1 (aiosmtpd, in this
process, offering PIPELINING like Postfix) that notes when it accepted each recipient's mail;
a municipality of ``--schools`` schools through the REST API and a roster per school imported
with `mimamori import-roster` (``--registrants`` shared evenly); and a second municipality of
ONE school the size of the average school, the **baseline**. Each run sends an urgent broadcast
with read confirmation to the whole city through the REST API, waits until it is sent, then
the same broadcast to the one-school municipality.

Measured from the moment before ``POST …/send`` to the relay's acceptance of the mail (the
recipient's school is read from the roster's address): the first mail of the broadcast; each
school's first mail (the max and the median over the schools); the last mail. The one-school
broadcast's first mail is the floor a school's first mail can reach on this machine in this
run; **ratio = the city's slowest school's first mail ÷ the floor**. The acceptance asks for
the first mail in < 2 s and each school's first within 3 s at 100,000 over 40 schools.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/fairness.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import common, users
from mimamori.mail.devmailbox import Pipelining

SUBJECT = "【安否確認】地震が発生しました"
BODY = "市内で震度5弱以上の地震がありました。\nお子さまとご家族の安否をお知らせください。"
QUAKE_DOCUMENT = common.ROOT / "tests" / "jma" / "vxse53_iwamizawa.xml"  # 岩見沢市 0121000 at 5弱
SCHOOL_OF = re.compile(r"\.s(\d+)n\d+@")  # bench/users.py's slot-1 addresses: papa.s{school}n{i}@…


class Relay(Pipelining):
    """The relay stand-in: accepts everything and notes when it accepted each recipient's mail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[tuple[float, str]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        now = time.time()
        with self.lock:
            self.accepted.extend((now, recipient) for recipient in envelope.rcpt_tos)
        return "250 OK queued"

    def take(self) -> list[tuple[float, str]]:
        with self.lock:
            taken, self.accepted = self.accepted, []
        return taken


@dataclass
class Sent:
    messages: int
    schools: int
    schools_reached: int
    first_s: float
    school_first_max_s: float
    school_first_p50_s: float
    last_s: float
    fanned_out_s: float


@dataclass
class Run:
    city: Sent
    baseline: Sent
    ratio: float
    quake: Sent | None = None  # --quake: the earthquake 安否確認, from the document recorded
    quake_ratio: float | None = None  # its slowest school's first mail ÷ the baseline's first
    ingest_command_s: float | None = None  # `mimamori jma-ingest` from start to the document recorded


def send_and_measure(
    installation: users.Installation, relay: Relay, code: str, schools: int, timeout: float
) -> Sent:
    """One urgent broadcast to municipality ``code`` through the REST API, measured at the relay."""
    relay.take()
    api = installation.api
    assert api is not None
    draft = api(
        "POST",
        "/broadcasts",
        {
            "scope": {"municipality": code},
            "subject": SUBJECT,
            "body": BODY,
            "request_confirmation": True,
            "urgent": True,
        },
    )
    started = time.time()
    api("POST", f"/broadcasts/{draft['id']}/send")
    return measure(relay, int(draft["id"]), started, schools, timeout)


def quake_and_measure(
    installation: users.Installation, relay: Relay, number: int, schools: int, timeout: float
) -> tuple[Sent, float]:
    """JMA's 震源・震度に関する情報 (VXSE53) for 岩見沢市 at 5弱, given to `mimamori jma-ingest` as the
    feed poller or an operator gives it, with an EventID of its own; the earthquake 安否確認 the
    city's settings send by themselves, measured at the relay from the moment the document was
    recorded (JmaDocument.received_at). Also returns how long the command itself took to start
    and record it (a fresh Python process; the feed poller runs in a worker already up)."""
    from mimamori.quakes.models import JmaDocument, QuakeAlert

    relay.take()
    event_id = f"2026120800{number:04d}"
    document = QUAKE_DOCUMENT.read_bytes().replace(b"20261207193012", event_id.encode())
    started = time.time()
    installation.command("jma-ingest", "-", stdin=document)
    received = JmaDocument.objects.get(event_id=event_id).received_at.timestamp()
    deadline = time.monotonic() + 30
    while (alert := QuakeAlert.objects.filter(event_id=event_id, broadcast__isnull=False).first()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no earthquake broadcast for EventID {event_id}")
        time.sleep(0.05)
    assert alert.broadcast_id is not None
    return measure(relay, alert.broadcast_id, received, schools, timeout), round(received - started, 3)


def measure(relay: Relay, broadcast_id: int, started: float, schools: int, timeout: float) -> Sent:
    """A broadcast's mails at the relay, from ``started`` (a Unix time) until it is sent."""
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus

    deadline = time.monotonic() + timeout
    while not Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.SENT).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"broadcast {broadcast_id} not sent in {timeout:.0f} s")
        time.sleep(0.2)
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    accepted = relay.take()
    if len(accepted) != broadcast.message_count:
        print(f"warning: the relay accepted {len(accepted)} of {broadcast.message_count} mails", flush=True)
    first_by_school: dict[int, float] = {}
    for at, recipient in accepted:
        found = SCHOOL_OF.search(recipient)
        if found:
            school = int(found.group(1))
            first_by_school[school] = min(at, first_by_school.get(school, at))
    firsts = sorted(at - started for at in first_by_school.values())
    assert broadcast.fanned_out_at is not None
    assert broadcast.send_requested_at is not None
    return Sent(
        messages=len(accepted),
        schools=schools,
        schools_reached=len(first_by_school),
        first_s=round(min(at for at, _ in accepted) - started, 3),
        school_first_max_s=round(firsts[-1], 3),
        school_first_p50_s=round(statistics.median(firsts), 3),
        last_s=round(max(at for at, _ in accepted) - started, 3),
        fanned_out_s=round((broadcast.fanned_out_at - broadcast.send_requested_at).total_seconds(), 3),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrants", type=int, default=100_000, help="in the city (default 100,000)")
    parser.add_argument("--schools", type=int, default=40, help="of the city (default 40)")
    parser.add_argument("--runs", type=int, default=2, help="city and baseline broadcasts (default 2)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of quiet before each send")
    parser.add_argument("--embedded", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--quake",
        action="store_true",
        help="also the earthquake 安否確認 a VXSE53 given to `mimamori jma-ingest` sends (hold 0)",
    )
    parser.add_argument(
        "--admin-url", default=common.ADMIN_URL, help="PostgreSQL to make the throwaway DB on"
    )
    args = parser.parse_args(argv)

    relay = Relay()
    port = common.free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    data_dir = Path(tempfile.mkdtemp(prefix="mimamori-bench-"))
    runs: list[Run] = []
    size = -(-args.registrants // args.schools)
    timeout = max(180.0, args.registrants / 50)
    try:
        with common.database(args.embedded, data_dir, args.admin_url) as database_url:
            common.django_for(database_url, data_dir, EMAIL_URL=f"smtp://127.0.0.1:{port}")
            logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
            installation = users.Installation(database_url, data_dir, f"smtp://127.0.0.1:{port}")
            with installation.running():
                installation.sign_in_as_centre()
                began = time.monotonic()
                left = args.registrants
                for school in installation.create_city("city", args.schools):
                    installation.import_roster(school, min(left, size))
                    left -= min(left, size)
                (solo,) = installation.create_city("solo", 1)
                installation.import_roster(solo, size)
                print(f"imported {args.registrants} + {size} in {time.monotonic() - began:.1f} s", flush=True)
                if args.quake:
                    assert installation.api is not None
                    earthquake = {"city_codes": ["0121000"], "threshold": "5-", "hold_seconds": 0}
                    installation.api("PUT", "/municipalities/city/earthquake", earthquake)
                for number in range(args.runs):
                    time.sleep(args.warmup)
                    city = send_and_measure(installation, relay, "city", args.schools, timeout)
                    time.sleep(args.warmup)
                    baseline = send_and_measure(installation, relay, "solo", 1, timeout)
                    run = Run(city, baseline, round(city.school_first_max_s / baseline.first_s, 2))
                    if args.quake:
                        time.sleep(args.warmup)
                        run.quake, run.ingest_command_s = quake_and_measure(
                            installation, relay, number + 1, args.schools, timeout
                        )
                        run.quake_ratio = round(run.quake.school_first_max_s / baseline.first_s, 2)
                    print(f"run {number + 1}: {asdict(run)}", flush=True)
                    runs.append(run)
            from django.db import connections

            connections.close_all()
    finally:
        controller.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    report(args, runs)
    return 0


def report(args: argparse.Namespace, runs: list[Run]) -> None:
    engine = "SQLite" if args.embedded else "PostgreSQL"
    print(
        f"\nFairness: an urgent broadcast to {args.registrants:,} registrants over {args.schools} schools, "
        f"baseline one school of {-(-args.registrants // args.schools):,}; users' path, {engine}"
    )
    rows: list[list[Any]] = []
    for number, run in enumerate(runs, 1):
        city, floor = run.city, run.baseline
        rows.append(
            [
                number,
                city.messages,
                f"{city.schools_reached}/{city.schools}",
                city.first_s,
                city.school_first_p50_s,
                city.school_first_max_s,
                city.last_s,
                city.fanned_out_s,
                floor.first_s,
                floor.last_s,
                run.ratio,
            ]
        )
    print(
        common.table(
            [
                "run",
                "mails",
                "schools",
                "first s",
                "school first p50 s",
                "school first max s",
                "last s",
                "fanned out s",
                "baseline first s",
                "baseline last s",
                "ratio max/baseline",
            ],
            rows,
        )
    )
    quakes = [run for run in runs if run.quake is not None]
    if quakes:
        print(
            "\nThe earthquake 安否確認: a VXSE53 for the city (5弱, hold 0) given to `mimamori jma-ingest`,"
        )
        print("measured from the document recorded; baseline as above")
        print(
            common.table(
                [
                    "run",
                    "mails",
                    "schools",
                    "first s",
                    "school first p50 s",
                    "school first max s",
                    "last s",
                    "ratio max/baseline",
                    "jma-ingest command s",
                ],
                [
                    [
                        number,
                        run.quake.messages,
                        f"{run.quake.schools_reached}/{run.quake.schools}",
                        run.quake.first_s,
                        run.quake.school_first_p50_s,
                        run.quake.school_first_max_s,
                        run.quake.last_s,
                        run.quake_ratio,
                        run.ingest_command_s,
                    ]
                    for number, run in enumerate(runs, 1)
                    if run.quake is not None
                ],
            )
        )
    path = common.write_results(
        "fairness", {"args": vars(args), "machine": common.machine(), "runs": [asdict(run) for run in runs]}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    raise SystemExit(main())

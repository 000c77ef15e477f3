"""Isolation benchmark (B12): one destination in trouble must not slow the mail to the others.

    uv run python -m bench.isolation                       # 10,000 imported, PostgreSQL, 451 and slow
    uv run python -m bench.isolation --trouble slow --runs 3
    uv run python -m bench.isolation --embedded            # the same on SQLite

**Users' path**: a throwaway database; `mimamori run` as an operator starts it, with EMAIL_URL
at a relay stand-in on 127.0.0.1 (aiosmtpd, in this process, offering PIPELINING like Postfix);
a municipality and schools through the REST API; rosters imported with `mimamori import-roster`,
whose slot-1 addresses go to five domains in turn, one of them docomo.ne.jp: a fifth of the
audience. Carrier profiles as a fresh installation has them.

Each run sends the same normal broadcast twice through the REST API, in turn:
- **clean**: the relay accepts every mail;
- **trouble**: the relay answers every docomo.ne.jp RCPT with ``451 4.7.1`` (``451``), or takes
  five seconds before answering it (``slow``), as a relay whose carrier is deferring or slow does.

Measured: the rest's throughput, the mails to the other four fifths over the time from send
(Broadcast.send_requested_at) to the last of them accepted (Delivery.accepted_at, stamped per
flush of at most 0.2 s), and **ratio = trouble ÷ clean of the same run** (the acceptance asks
≥ 0.90). Then the destination recovers (the relay accepts again), and the bench waits for the
broadcast to be sent, reporting the time from recovery until every docomo.ne.jp mail was
accepted and whether any address got a copy twice (the relay counts copies per recipient).
How soon they go after recovery depends on where the group's growing pause stands
(MIMAMORI_CARRIER_PAUSE_SECONDS doubling up to MIMAMORI_CARRIER_PAUSE_MAX_SECONDS).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/isolation.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import common, users
from mimamori.mail.devmailbox import Pipelining

TROUBLED = "docomo.ne.jp"
DOMAINS = (TROUBLED, "ezweb.ne.jp", "softbank.ne.jp", "gmail.com", "yahoo.co.jp")  # a fifth each
SUBJECT = "下校時刻の変更について"
BODY = "本日は職員会議のため、全学年14時30分に一斉下校します。\nご家庭での見守りをお願いします。"
SLOW_SECONDS = 5.0
MESSAGE_ID = re.compile(rb"^Message-ID: *(\S+)", re.IGNORECASE | re.MULTILINE)


class Relay(Pipelining):
    """The relay stand-in: accepts, counts copies per recipient, and troubles one domain on demand."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[tuple[str, bytes]] = Counter()  # (recipient, Message-ID)
        self.trouble = ""  # "", "451" or "slow"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.endswith("@" + TROUBLED):
            if self.trouble == "451":
                return "451 4.7.1 Service temporarily unavailable, try again later"
            if self.trouble == "slow":
                await asyncio.sleep(SLOW_SECONDS)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        found = MESSAGE_ID.search(content)
        message_id = found.group(1) if found else b""
        with self.lock:
            self.copies.update((recipient, message_id) for recipient in envelope.rcpt_tos)
        return "250 OK queued"

    def duplicates(self) -> int:
        with self.lock:
            return sum(count - 1 for count in self.copies.values() if count > 1)


@dataclass
class Run:
    trouble: str
    messages: int
    rest: int
    clean_rest_s: float
    clean_rest_msgs_per_s: float
    trouble_rest_s: float
    trouble_rest_msgs_per_s: float
    ratio: float
    troubled_deferred_at_rest_end: int
    recovered_in_s: float
    duplicates: int


def rest_seconds(broadcast_id: int, timeout: float) -> tuple[float, int]:
    """Seconds from send until every mail not to the troubled domain was accepted, and how many."""
    from django.db.models import Max

    from mimamori.broadcasts.models import Broadcast, Delivery, DeliveryStatus

    broadcast = Broadcast.objects.get(pk=broadcast_id)
    deadline = time.monotonic() + timeout
    while True:
        broadcast.refresh_from_db()
        rest = Delivery.objects.filter(broadcast_id=broadcast_id).exclude(email__endswith="@" + TROUBLED)
        if broadcast.fanned_out_at and not rest.exclude(status=DeliveryStatus.ACCEPTED).exists():
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the rest of broadcast {broadcast_id} was not delivered in {timeout:.0f} s")
        time.sleep(0.1)
    last = rest.aggregate(last=Max("accepted_at"))["last"]
    assert last is not None
    assert broadcast.send_requested_at is not None
    return (last - broadcast.send_requested_at).total_seconds(), rest.count()


def wait_until_sent(broadcast_id: int, timeout: float) -> float:
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus

    started = time.monotonic()
    while not Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.SENT).exists():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"broadcast {broadcast_id} not sent {timeout:.0f} s after recovery")
        time.sleep(0.2)
    return time.monotonic() - started


def one_run(installation: users.Installation, relay: Relay, trouble: str, args: argparse.Namespace) -> Run:
    from mimamori.broadcasts.models import Broadcast, Delivery, DeliveryStatus

    timeout = max(120.0, args.registrants / 20)
    time.sleep(args.warmup)
    clean = installation.broadcast("bench", urgent=False, subject=SUBJECT, body=BODY)
    clean_s, rest = rest_seconds(clean, timeout)
    wait_until_sent(clean, timeout)

    time.sleep(args.warmup)
    relay.trouble = trouble
    troubled = installation.broadcast("bench", urgent=False, subject=SUBJECT, body=BODY)
    trouble_s, _ = rest_seconds(troubled, timeout)
    waiting = Delivery.objects.filter(
        broadcast_id=troubled, email__endswith="@" + TROUBLED, status=DeliveryStatus.DEFERRED
    ).count()
    relay.trouble = ""  # the destination recovers
    recovered = wait_until_sent(troubled, args.recovery_timeout)
    messages = Broadcast.objects.get(pk=troubled).message_count
    return Run(
        trouble=trouble,
        messages=messages,
        rest=rest,
        clean_rest_s=round(clean_s, 3),
        clean_rest_msgs_per_s=round(rest / clean_s, 1),
        trouble_rest_s=round(trouble_s, 3),
        trouble_rest_msgs_per_s=round(rest / trouble_s, 1),
        ratio=round(clean_s / trouble_s, 3),
        troubled_deferred_at_rest_end=waiting,
        recovered_in_s=round(recovered, 1),
        duplicates=relay.duplicates(),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrants", type=int, default=10_000, help="default 10,000")
    parser.add_argument("--trouble", choices=["451", "slow", "both"], default="both")
    parser.add_argument("--runs", type=int, default=2, help="pairs per trouble; medians reported (default 2)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of quiet before each send")
    parser.add_argument(
        "--recovery-timeout", type=float, default=600.0, help="seconds to wait for delivery after recovery"
    )
    parser.add_argument("--embedded", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--admin-url", default=common.ADMIN_URL, help="PostgreSQL to make the throwaway DB on"
    )
    args = parser.parse_args(argv)

    troubles = ["451", "slow"] if args.trouble == "both" else [args.trouble]
    relay = Relay()
    port = common.free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    data_dir = Path(tempfile.mkdtemp(prefix="mimamori-bench-"))
    runs: list[Run] = []
    try:
        with common.database(args.embedded, data_dir, args.admin_url) as database_url:
            common.django_for(database_url, data_dir, EMAIL_URL=f"smtp://127.0.0.1:{port}")
            # aiosmtpd logs every command at INFO, which Django's logging set-up lets through:
            # that would cost the relay stand-in more than its work.
            logging.getLogger("mail.log").setLevel(logging.WARNING)
            installation = users.Installation(database_url, data_dir, f"smtp://127.0.0.1:{port}")
            with installation.running():
                installation.sign_in_as_centre()
                schools = installation.create_city("bench", -(-args.registrants // users.SCHOOL_SIZE))
                left = args.registrants
                for school in schools:
                    imported = installation.import_roster(school, min(left, users.SCHOOL_SIZE), DOMAINS)
                    left -= imported.rows
                    print(f"imported {imported}", flush=True)
                for trouble in troubles:
                    for number in range(args.runs):
                        run = one_run(installation, relay, trouble, args)
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
        f"\nIsolation: {runs[0].messages} mails a broadcast, a fifth to {TROUBLED}; users' path "
        f"(import-roster, REST API, mimamori run), {engine}"
    )
    rows: list[list[Any]] = []
    for trouble in dict.fromkeys(run.trouble for run in runs):
        mine = [run for run in runs if run.trouble == trouble]
        rows.append(
            [
                {"451": "451 to every RCPT", "slow": f"{SLOW_SECONDS:.0f} s per RCPT"}[trouble],
                round(statistics.median(run.clean_rest_msgs_per_s for run in mine)),
                round(statistics.median(run.trouble_rest_msgs_per_s for run in mine)),
                round(statistics.median(run.ratio for run in mine), 2),
                max(run.recovered_in_s for run in mine),
                sum(run.duplicates for run in mine),
            ]
        )
    print(
        common.table(
            [
                "trouble at docomo",
                "rest clean msg/s",
                "rest in trouble msg/s",
                "ratio",
                "after recovery s",
                "dupes",
            ],
            rows,
        )
    )
    path = common.write_results(
        "isolation", {"args": vars(args), "machine": common.machine(), "runs": [asdict(run) for run in runs]}
    )
    print(f"results: {path}")


if __name__ == "__main__":
    raise SystemExit(main())

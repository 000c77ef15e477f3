"""Fault drills (issue 6 item 2): a broadcast must reach everyone whatever breaks mid-send.

    .venv/bin/python -m bench.drills [--registrants 20000] [--only NAME] [--engine embedded]

Each drill makes its own school of N registrants (one address each), sends a broadcast with
confirmation links to an SMTP sink in this process (aiosmtpd, counting copies per recipient),
breaks something while the mail goes out, and waits for the broadcast to finish:

- kill-workers: kill -9 every worker process three times during the send (restarted at once);
- refuse-10pct: the sink answers 451 to 10% of the recipients on their first attempt;
- sink-down: the sink stops listening for --sink-down seconds (30), then comes back;
- postgres-restart: `pg_ctl restart -m fast` of the drills' own PostgreSQL server;
- rabbitmq-restart: `rabbitmqctl stop_app && rabbitmqctl start_app`, always in distributed mode.

A drill passes when the broadcast ends "sent" in time, every delivery is accepted, no recipient
lost, no worker died on its own, and the duplicates stay within the in-flight bound: per task
that can be cut off, MIMAMORI_SMTP_CONNECTIONS × (FLUSH_ROWS + 1) mails (one in each connection
and a batch not yet recorded). The command exits non-zero if any drill fails.

The drills' database is on a PostgreSQL server of their own (bench/pgserver.py: initdb in a
temporary directory, its own port), which the postgres-restart drill restarts: the machine's
PostgreSQL service is never stopped or restarted. RabbitMQ is the machine's, restarted by the
rabbitmq-restart drill (as root) and always started again before the drill returns.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.pgserver import PrivatePostgres, postmaster_start
from mimamori.mail.devmailbox import Pipelining

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
ENGINES = ("embedded", "rabbitmq")
# Short leases and sweeps, so work a drill cut off is taken up again within seconds.
WORKER_SETTINGS = {
    "MIMAMORI_SWEEP_SECONDS": "1",
    "MIMAMORI_DELIVERY_LEASE_SECONDS": "3",
    "MIMAMORI_CARRIER_LEASE_SECONDS": "3",
    "MIMAMORI_RETRY_BASE_SECONDS": "1",
    "MIMAMORI_RETRY_MAX_SECONDS": "4",
}


class CountingSink(Pipelining):
    """An aiosmtpd handler counting the copies each recipient got; it can refuse or go away."""

    def __init__(self, refuse_first: set[str] | None = None) -> None:
        self.lock = threading.Lock()
        self.copies: Counter[str] = Counter()
        self.refuse_first = set(refuse_first or ())
        self.refused: Counter[str] = Counter()
        self.port = _free_port()
        self.controller: Controller | None = None
        self.start()

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, server_hostname="sink")
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            if address in self.refuse_first and not self.refused[address]:
                self.refused[address] += 1
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.copies.update(envelope.rcpt_tos)
        return "250 OK"

    def count(self) -> int:
        with self.lock:
            return sum(self.copies.values())


@dataclass
class Workers:
    """`mimamori worker` processes for one drill, each in a process group of its own."""

    database_url: str
    sink_port: int
    tmp: Path
    broker: str | None = None
    prefix: str = field(default_factory=lambda: f"drill{os.getpid()}-{uuid.uuid4().hex[:8]}-")
    processes: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)

    def environment(self) -> dict[str, str]:
        drop = {"DATABASE_URL", "EMAIL_URL", "BROKER_URL", "BASE_URL"}
        environment = {k: v for k, v in os.environ.items() if k not in drop}
        environment |= WORKER_SETTINGS | {
            "DJANGO_SETTINGS_MODULE": "mimamori.settings",
            "DATABASE_URL": self.database_url,
            "EMAIL_URL": f"smtp://127.0.0.1:{self.sink_port}",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "drills-secret",
            "MIMAMORI_DATA_DIR": str(self.tmp),
            "MIMAMORI_QUEUE_PREFIX": self.prefix,
            "PYTHONUNBUFFERED": "1",
        }
        if self.broker:
            environment["BROKER_URL"] = self.broker
        return environment

    def start(self, *arguments: str) -> None:
        log = self.tmp / f"worker-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "mimamori", "worker", *arguments],
                env=self.environment(),
                stdout=output,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        self.processes.append((process, log))

    def live(self) -> list[subprocess.Popen[bytes]]:
        return [p for p, _ in self.processes if p.poll() is None]

    def died(self) -> list[int]:
        """Exit codes of workers that stopped though nobody killed them."""
        return [p.returncode for p, _ in self.processes if p.poll() is not None and p.pid not in self.killed]

    def kill_all(self) -> int:
        victims = self.live()
        for process in victims:
            os.killpg(process.pid, signal.SIGKILL)
            self.killed.add(process.pid)
        for process in victims:
            process.wait()
        return len(victims)

    def stop_all(self) -> None:
        for process in self.live():
            os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-tail:]}" for _, log in self.processes
        )


@dataclass
class Result:
    name: str
    engine: str
    registrants: int
    delivered: int
    lost: int
    duplicated: int
    bound: int
    events: str
    seconds: float
    passed: bool
    why: str = ""

    def row(self) -> list[Any]:
        verdict = "pass" if self.passed else f"FAIL ({self.why})"
        return [
            self.name,
            self.engine,
            self.registrants,
            self.delivered,
            self.lost,
            self.duplicated,
            self.bound,
            f"{self.seconds:.1f}",
            self.events,
            verdict,
        ]


HEADERS = ["drill", "engine", "N", "delivered", "lost", "dup", "dup bound", "s", "events", "result"]


@dataclass
class Stage:
    """What a drill's disruption can reach while the broadcast is under way."""

    sink: CountingSink
    workers: Workers
    worker_arguments: tuple[str, ...]
    registrants: int
    tasks_per_round: int
    events: list[str] = field(default_factory=list)
    cut_tasks: int = 0
    # The server the drill's database is on, when it is one the drill may restart.
    postgres: PrivatePostgres | None = None

    def restart_workers(self) -> None:
        for _ in range(self.started):
            self.workers.start(*self.worker_arguments)

    @property
    def started(self) -> int:
        return 2 if not self.workers.broker else 1

    def wait_for_mail(self, count: int, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while self.sink.count() < count:
            if time.monotonic() > deadline:
                raise DrillError(f"only {self.sink.count()} mails after {seconds:.0f} s")
            time.sleep(0.02)


class DrillError(Exception):
    pass


# --- the drills -----------------------------------------------------------------------------


def kill_workers(stage: Stage) -> None:
    for fraction in (0.2, 0.45, 0.7):
        stage.wait_for_mail(int(stage.registrants * fraction))
        at = stage.sink.count()
        killed = stage.workers.kill_all()
        stage.restart_workers()
        stage.cut_tasks += killed * (stage.tasks_per_round // stage.started)
        stage.events.append(f"kill -9 ×{killed} at {at}")


def refuse_10pct(stage: Stage) -> None:
    stage.events.append(f"451 to {len(stage.sink.refuse_first)}")


def sink_down(seconds: float) -> Callable[[Stage], None]:
    def drill(stage: Stage) -> None:
        stage.wait_for_mail(int(stage.registrants * 0.25))
        at = stage.sink.count()
        stage.sink.stop()
        # Connections open at that moment may lose the reply to a DATA the sink took.
        stage.cut_tasks += stage.tasks_per_round
        time.sleep(seconds)
        stage.sink.start()
        stage.events.append(f"sink down {seconds:.0f} s at {at}")

    return drill


def postgres_restart(stage: Stage) -> None:
    """Restart the drill's own PostgreSQL server (never the machine's service) at 25 % of the mail."""
    server = stage.postgres
    if server is None:
        raise DrillError("postgres-restart needs the drill's own PostgreSQL server (run_drill(postgres=…))")
    stage.wait_for_mail(int(stage.registrants * 0.25))
    at = stage.sink.count()
    started = postmaster_start(server.url())
    began = time.monotonic()
    try:
        server.restart()
    finally:
        server.ensure_running()
    if postmaster_start(server.url()) == started:
        raise DrillError("PostgreSQL did not restart")
    stage.cut_tasks += stage.tasks_per_round
    stage.events.append(f"PostgreSQL restarted at {at} ({time.monotonic() - began:.1f} s)")


def rabbitmq_restart(stage: Stage) -> None:
    stage.wait_for_mail(int(stage.registrants * 0.25))
    at = stage.sink.count()
    began = time.monotonic()
    try:
        _run(["rabbitmqctl", "stop_app"])
        _run(["rabbitmqctl", "start_app"])
    finally:
        ensure_rabbitmq()
    stage.cut_tasks += stage.tasks_per_round
    stage.events.append(f"RabbitMQ restarted at {at} ({time.monotonic() - began:.1f} s)")


def drills(sink_down_seconds: float) -> dict[str, tuple[Callable[[Stage], None], str | None]]:
    """name -> (disruption, engine it must run on or None for --engine)."""
    return {
        "kill-workers": (kill_workers, None),
        "refuse-10pct": (refuse_10pct, None),
        "sink-down": (sink_down(sink_down_seconds), None),
        "postgres-restart": (postgres_restart, None),
        "rabbitmq-restart": (rabbitmq_restart, "rabbitmq"),
    }


# --- running one ----------------------------------------------------------------------------


def run_drill(
    name: str,
    disrupt: Callable[[Stage], None],
    *,
    registrants: int,
    engine: str,
    database_url: str,
    tmp: Path,
    timeout: float = 300,
    postgres: PrivatePostgres | None = None,
) -> Result:
    """Make the audience, send, disrupt, wait for the end and count what the sink got.

    ``postgres`` is the server ``database_url`` is on, for the drill that restarts it.
    """
    from django.conf import settings
    from django.test.utils import override_settings

    from mimamori.broadcasts import delivery

    school, emails = make_audience(registrants, name)
    broadcast_id = compose(school, f"訓練 {name}")
    refuse = set(emails[::10]) if name == "refuse-10pct" else set()
    sink = CountingSink(refuse)
    workers = Workers(database_url, sink.port, tmp, RABBITMQ if engine == "rabbitmq" else None)
    # Embedded: two processes of one task each; distributed: one process of two threads.
    arguments: tuple[str, ...] = ("--interval=0.2",) if engine == "embedded" else ("--concurrency=2",)
    stage = Stage(sink, workers, arguments, registrants, tasks_per_round=2, postgres=postgres)
    per_task = settings.MIMAMORI_SMTP_CONNECTIONS * (delivery.FLUSH_ROWS + 1)
    began = time.monotonic()
    why = ""
    try:
        with override_settings(BROKER_URL=workers.broker, MIMAMORI_QUEUE_PREFIX=workers.prefix):
            stage.restart_workers()
            send(broadcast_id)
            try:
                disrupt(stage)
                finished = wait_until_sent(broadcast_id, timeout)
            except DrillError as error:
                finished, why = False, str(error)
    finally:
        died = workers.died()
        workers.stop_all()
        sink.stop()
        if workers.broker:
            delete_queues(workers.broker, workers.prefix)
    seconds = time.monotonic() - began
    copies = sink.copies
    lost = sum(1 for e in emails if copies[e] == 0)
    duplicated = sum(n - 1 for n in copies.values() if n > 1)
    bound = stage.cut_tasks * per_task
    open_rows = open_deliveries(broadcast_id)
    if not why:
        why = "; ".join(
            reason
            for reason, failed in [
                ("not sent in time", not finished),
                (f"{open_rows} deliveries not accepted", open_rows),
                (f"{lost} lost", lost),
                (f"{duplicated} duplicates > {bound}", duplicated > bound),
                (f"workers died on their own: exit codes {died}", died),
                (f"{len(refuse)} refused but only {sum(sink.refused.values())} seen", refuse_short(sink)),
            ]
            if failed
        )
    if why:
        print(workers.logs(), file=sys.stderr)
    return Result(
        name, engine, registrants, sum(1 for e in emails if copies[e]), lost, duplicated, bound,
        ", ".join(stage.events), seconds, not why, why,
    )  # fmt: skip


def refuse_short(sink: CountingSink) -> bool:
    return bool(sink.refuse_first) and set(sink.refused) != sink.refuse_first


def make_audience(count: int, tag: str) -> tuple[Any, list[str]]:
    """A school of ``count`` registrants with one address each, in a few bulk statements."""
    from mimamori.accounts.models import User
    from mimamori.registry.models import Address, Municipality, Registrant, School

    key = f"{tag.replace('-', '')}{uuid.uuid4().hex[:6]}"
    municipality = Municipality.objects.create(
        code=key[:20], name=f"訓練市{key}", mail_domain=f"mail.{key}.example.jp", support_name="窓口",
        support_phone="0120-000-000", support_email=f"support@{key}.example.jp", support_hours="平日",
    )  # fmt: skip
    school = School.objects.create(municipality=municipality, name=f"訓練小学校{key}", sender_local_part=key)
    users = User.objects.bulk_create(
        [User(username=f"{key}-{n:07d}", role="", password="!") for n in range(count)],  # noqa: S106
        batch_size=5000,
    )
    registrants = Registrant.objects.bulk_create(
        [
            Registrant(school=school, account=u, child_name=f"児童{n}", grade=1 + n % 6, class_name="1")
            for n, u in enumerate(users)
        ],
        batch_size=5000,
    )
    emails = [f"{key}-{n:07d}@docomo.ne.jp" for n in range(count)]
    Address.objects.bulk_create(
        [Address(registrant=r, slot=1, email=e) for r, e in zip(registrants, emails, strict=True)],
        batch_size=5000,
    )
    return school, emails


def compose(school: Any, subject: str) -> int:
    from mimamori.accounts.models import Role, User
    from mimamori.broadcasts import sending
    from mimamori.broadcasts.targeting import resolve_scope

    staff = User.objects.create(username=f"staff-{uuid.uuid4().hex[:10]}", role=Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject=subject, body="これは訓練です。", scope=resolve_scope(staff), request_confirmation=True
    )
    return broadcast.pk


def send(broadcast_id: int) -> None:
    from mimamori.broadcasts import sending
    from mimamori.broadcasts.models import Broadcast

    if not sending.send(Broadcast.objects.get(pk=broadcast_id)):
        raise DrillError("send() refused the broadcast")


def _retrying(query: Callable[[], Any]) -> Any:
    """Run ``query``, reconnecting while the database restarts (this process uses it too)."""
    from django.db import DatabaseError, connections

    for _ in range(60):
        try:
            return query()
        except DatabaseError:
            connections.close_all()
            time.sleep(0.5)
    return query()


def wait_until_sent(broadcast_id: int, seconds: float) -> bool:
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _retrying(lambda: Broadcast.objects.get(pk=broadcast_id).status) == BroadcastStatus.SENT:
            return True
        time.sleep(0.1)
    return False


def open_deliveries(broadcast_id: int) -> int:
    from mimamori.broadcasts.models import Delivery, DeliveryStatus

    rows = Delivery.objects.filter(broadcast_id=broadcast_id).exclude(status=DeliveryStatus.ACCEPTED)
    return int(_retrying(rows.count))


# --- the services a drill breaks, and putting them back -------------------------------------


def _run(command: list[str], timeout: float = 120) -> None:
    subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def ensure_rabbitmq() -> None:
    subprocess.run(["rabbitmqctl", "start_app"], capture_output=True, timeout=120)
    subprocess.run(["rabbitmqctl", "await_startup"], capture_output=True, timeout=120)


def can_restart_rabbitmq() -> bool:
    return os.geteuid() == 0 and bool(subprocess.run(["which", "rabbitmqctl"], capture_output=True).stdout)


def delete_queues(broker: str, prefix: str) -> None:
    from mimamori.tasking import celery

    app = celery._app(broker, prefix)
    try:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in app.conf.task_queues:
                queue.bind(channel).delete()
    except Exception as error:  # the broker may still be starting; the queues are only litter
        logging.getLogger(__name__).warning("could not delete the drill's queues: %s", error)
    finally:
        app.close()
        celery._app.cache_clear()


def database_url() -> str:
    """The URL of the database Django uses in this process, for the worker processes."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    credentials = quote(database.get("USER") or "")
    if database.get("PASSWORD"):
        credentials += ":" + quote(database["PASSWORD"])
    host = f"{database.get('HOST') or '127.0.0.1'}:{database.get('PORT') or 5432}"
    return f"postgres://{credentials}@{host}/{database['NAME']}"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- the command ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.drills", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrants", type=int, default=20000, help="Registrants per drill (20000).")
    parser.add_argument("--only", action="append", choices=list(drills(0)), help="Run only this drill.")
    parser.add_argument("--engine", choices=ENGINES, default="embedded", help="For all but rabbitmq-restart.")
    parser.add_argument("--sink-down", type=float, default=30, help="Seconds the sink is down (30).")
    parser.add_argument("--timeout", type=float, default=600, help="Seconds a drill may take to finish.")
    parser.add_argument(
        "--output", type=Path, help="Write the results here (default bench/results/drills-<timestamp>.json)."
    )
    options = parser.parse_args(argv)

    from bench import common, pgserver

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    chosen = {n: d for n, d in drills(options.sink_down).items() if not options.only or n in options.only}
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="drills-") as tmp,
        pgserver.private_postgres("mimamori-drills-", fsync=True) as server,
    ):
        url = server.create_database("mimamori_drills")
        # A throwaway secret for a throwaway database; the workers get the same (Workers.environment).
        common.django_for(url, Path(tmp), SECRET_KEY="drills-secret", EMAIL_URL="smtp://127.0.0.1:1")  # noqa: S106
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        for name, (disrupt, engine) in chosen.items():
            print(f"{name} …", flush=True)
            try:
                result = run_drill(
                    name, disrupt, registrants=options.registrants, engine=engine or options.engine,
                    database_url=url, tmp=Path(tmp), timeout=options.timeout, postgres=server,
                )  # fmt: skip
            finally:
                server.ensure_running()
                if can_restart_rabbitmq():
                    ensure_rabbitmq()
            results.append(result)
            print(common.table(HEADERS, [result.row()]), flush=True)
    print()
    print(common.table(HEADERS, [r.row() for r in results]))
    data = {"options": vars(options), "drills": [vars(r) for r in results]}
    path = common.write_results("drills", data, options.output)
    print(f"\nwritten to {path}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Fan-out benchmark: one broadcast to every guardian of a city, through the real processes.

    uv run python -m bench.fanout                          # users' path, 10,000 imported, PostgreSQL
    uv run python -m bench.fanout --registrants 100000 --runs 2
    uv run python -m bench.fanout --embedded               # the same on SQLite
    uv run python -m bench.fanout --generated --workers 4  # the bench's own rows and extra workers
    uv run python -m bench.fanout --profile                # also py-spy one worker (needs uvx)

**Users' path (the default)**: what an operator does (bench/users.py). A throwaway database,
`mimamori run` with DATABASE_URL and EMAIL_URL (a Postfix smtp-sink on 127.0.0.1) set and
nothing else, so its own process layout; a municipality and schools through the REST API;
rosters of 10,000 children per school (slot 1 and slot 3 each, six mail domains, grades 1–6,
classes 1組–4組) imported with `mimamori import-roster`; then per run one normal and one
urgent broadcast with read confirmation to the whole municipality, composed and sent through
the REST API. Only slot 1 gets broadcasts (slots 3–4 never do), so N registrants make N mails.

**Generated (--generated)**: the previous default: N registrants written by INSERT … SELECT,
`--workers` extra `mimamori worker` processes, one urgent broadcast sent through
`sending.send`. Useful to isolate delivery from the rest; never the headline figure.

Measured per broadcast: send (Broadcast.send_requested_at) to the first and last
Delivery.accepted_at (recorded per flush, so "first" is late by up to 0.2 s), when the fan-out
had written everything, msg/s over send-to-last, what the sink counted, each worker's peak RSS
(VmHWM), and the CPU time per mail of the workers, of the web process, of every PostgreSQL
process and of the sink. Baseline in the same run: Postfix's smtp-source sending as many
messages of the same size to a fresh sink with as many parallel, reused sessions (-d, -s
workers × MIMAMORI_SMTP_CONNECTIONS); ratio = our msg/s ÷ smtp-source's.
BENCH_KEEP_LOG=FILE keeps `mimamori run`'s log of the users' path (workers included) in FILE.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/fanout.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

SCHOOLS = 4
SUBJECT = "【緊急】不審者情報"
BODY = (
    "本日15時ごろ、学校周辺で不審者の目撃情報がありました。\n"
    "下校時は複数で帰宅するよう、ご家庭でもお声がけをお願いします。\n"
    "お迎えが可能な方は校門までお越しください。"
)


@dataclass
class Run:
    kind: str  # "urgent" or "normal"
    registrants: int
    messages: int
    failed: int
    first_s: float
    last_s: float
    fan_out_s: float
    msgs_per_s: float
    sink_counted: int
    worker_peak_rss_mb: float
    worker_cpu_ms_per_msg: float
    web_cpu_ms_per_msg: float
    postgres_cpu_ms_per_msg: float
    sink_cpu_ms_per_msg: float
    workers_total_peak_rss_mb: float
    baseline_s: float
    baseline_msgs_per_s: float
    ratio: float


# ---------------------------------------------------------------- data


def populate(registrants: int) -> None:
    """SCHOOLS schools in two municipalities; each registrant one guardian address (slot 1)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from mimamori.accounts.models import Role, User
    from mimamori.registry.models import Municipality, School

    with transaction.atomic():
        cities = [
            Municipality.objects.create(
                code=f"bench{n}",
                name=f"ベンチ市{n}",
                mail_domain=f"mail.bench{n}.example.jp",
                support_name="サポート窓口",
                support_phone="0120-000-000",
                broadcast_slots=[1, 2],
            )
            for n in (1, 2)
        ]
        schools = [
            School.objects.create(
                municipality=cities[n % 2], name=f"第{n + 1}小学校", sender_local_part=f"school{n + 1}"
            )
            for n in range(SCHOOLS)
        ]
        User.objects.create(username="bench-centre", role=Role.CENTRE)
        now = timezone.now()
        # A numbers table both engines understand; the rows are written by the database itself.
        series = (
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) SELECT i FROM s) s"
        )
        first_school = min(s.pk for s in schools)
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email,"  # noqa: S608 - constant
                " is_staff, is_active, date_joined, role)"
                f" SELECT '!', %s, 'g' || CAST(s.i AS TEXT), '', '', '', %s, %s, %s, '' FROM {series}",
                [False, False, True, now, registrants],
            )
            cursor.execute(
                "INSERT INTO registry_registrant (school_id, account_id, child_name, child_name_kana, grade,"
                " class_name, status, receive_broadcasts, registration_code_digest, created_at, updated_at)"
                " SELECT %s + (u.id %% %s), u.id, '見守 太郎' || CAST(u.id AS TEXT), 'みまもり たろう',"
                " 1 + (u.id %% 6), CAST(1 + (u.id / 6) %% 4 AS TEXT), 'active', %s, '', %s, %s"
                " FROM accounts_user u WHERE u.username LIKE 'g%%'",
                [first_school, SCHOOLS, True, now, now],
            )
            cursor.execute(
                "INSERT INTO registry_address (registrant_id, slot, email, updated_at)"
                " SELECT r.id, 1, 'guardian' || CAST(r.id AS TEXT) || '@example.jp', %s"
                " FROM registry_registrant r",
                [now],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def reset_broadcasts() -> None:
    """Forget earlier runs' broadcasts, deliveries, receipts and tasks, so each run starts alike."""
    from django.db import connection
    from django_tasks_db.models import DBTaskResult

    from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery, Recipient
    from mimamori.receipts.models import Receipt

    if connection.vendor == "postgresql":
        tables = [Broadcast._meta.db_table, DBTaskResult._meta.db_table]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
            cursor.execute("ANALYZE")
        return
    through = [Broadcast.municipalities.through, Broadcast.schools.through]
    for model in [Receipt, Recipient, AudienceGroup, Delivery, *through, Broadcast, DBTaskResult]:
        model.objects.all()._raw_delete(connection.alias)  # type: ignore[attr-defined]


def sample_mail_size() -> int:
    """Bytes of one broadcast mail as the workers build it (one child, a confirmation link)."""
    from mimamori.broadcasts import mails
    from mimamori.registry.models import Registrant

    registrant = Registrant.objects.select_related("school__municipality").first()
    assert registrant is not None
    mail = mails.broadcast(
        school=registrant.school,
        to="guardian1@example.jp",
        subject=SUBJECT,
        body=BODY,
        urgent=True,
        children=[registrant],
        message_id=mails.new_message_id(registrant.school),
        confirmation_url=mails.confirmation_url("0" * 60),
    )
    return len(mail.message().as_bytes(linesep="\r\n"))


# ---------------------------------------------------------------- processes


class Sink:
    """Postfix smtp-sink on a fresh loopback port, counting completed DATA commands."""

    def __init__(self) -> None:
        self.port = common.free_port()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [common.which("smtp-sink"), "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "1000"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        common.wait_for_port(self.port)

    def count(self) -> int:
        self.log.seek(0)
        found = re.findall(rb"mesg=(\d+)", self.log.read())
        return int(found[-1]) if found else 0

    def stop(self) -> int:
        time.sleep(0.3)  # let the counter line for the last messages be written
        counted = self.count()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=10)
        self.log.close()
        return counted


def worker_environment(database_url: str, data_dir: Path, port: int, connections: int) -> dict[str, str]:
    return dict(
        os.environ,
        DATABASE_URL=database_url,
        MIMAMORI_DATA_DIR=str(data_dir),
        EMAIL_URL=f"smtp://127.0.0.1:{port}",
        MIMAMORI_SMTP_CONNECTIONS=str(connections),
        PYTHONUNBUFFERED="1",
    )


def start_workers(
    args: argparse.Namespace, environment: dict[str, str], logs: Path
) -> list[subprocess.Popen[bytes]]:
    if args.embedded:
        # What `mimamori run` starts: one worker for every queue, one for urgent alone.
        commands = [["--interval=0.5"], ["--interval=0.2", "--queues=urgent", "--no-sweep"]]
    else:
        commands = [[f"--interval={args.interval}"] for _ in range(args.workers)]
    workers = []
    for number, extra in enumerate(commands):
        with (logs / f"worker{number}.log").open("wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "mimamori", "worker", *extra],
                    env=environment,
                    cwd=common.ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def wait_until_polling(workers: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 90) -> None:
    """Django takes seconds to start on a small machine; the send must not wait for that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(w.poll() is not None for w in workers):
            raise RuntimeError(f"a worker exited at start-up; see {logs}")
        if all(b"Starting worker" in (logs / f"worker{n}.log").read_bytes() for n in range(len(workers))):
            return
        time.sleep(0.1)
    raise TimeoutError("workers did not start")


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- one run


def send_broadcast() -> int:
    from mimamori.accounts.models import User
    from mimamori.broadcasts import sending
    from mimamori.broadcasts.targeting import resolve_scope

    centre = User.objects.get(username="bench-centre")
    scope = resolve_scope(centre, municipality_codes=["bench1", "bench2"])
    broadcast = sending.compose(
        centre, subject=SUBJECT, body=BODY, scope=scope, urgent=True, request_confirmation=True
    )
    sending.send(broadcast, by=centre)
    return broadcast.pk


def wait_until_sent(broadcast_id: int, timeout: float) -> bool:
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Broadcast.objects.filter(pk=broadcast_id, status=BroadcastStatus.SENT).exists():
            return True
        time.sleep(0.1)
    return False


def baseline(messages: int, sessions: int, size: int) -> float:
    """Seconds smtp-source takes for the same mail count, size and parallelism (reused sessions)."""
    sink = Sink()
    started = time.monotonic()
    subprocess.run(
        [
            common.which("smtp-source"),
            "-d",  # keep the session for the next message, as our workers do
            f"-s{sessions}",
            f"-m{messages}",
            f"-l{size}",
            "-f",
            "school1@mail.bench1.example.jp",
            "-t",
            "guardian@example.jp",
            f"127.0.0.1:{sink.port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started
    counted = sink.stop()
    if counted != messages:
        print(f"warning: baseline sink counted {counted} of {messages}", file=sys.stderr)
    return elapsed


class Meter:
    """CPU time of the workers, the web process, PostgreSQL and the sink over one broadcast."""

    def __init__(self, workers: list[int], web: int | None, sink: int) -> None:
        self.workers, self.web, self.sink = workers, web, sink
        self.before = self._read()

    def _read(self) -> tuple[float, float, dict[int, float], float]:
        web = common.cpu_of([self.web]) if self.web else 0.0
        workers = sum(common.cpu_of([pid]) for pid in self.workers)
        return (workers, web, common.postgres_cpu_seconds(), common.cpu_of([self.sink]))

    def spent(self) -> tuple[float, float, float, float]:
        workers, web, postgres, sink = self._read()
        # Backends that started during the send count from zero; those that ended are missed.
        postgres_spent = sum(t - self.before[2].get(pid, 0.0) for pid, t in postgres.items())
        return workers - self.before[0], web - self.before[1], postgres_spent, sink - self.before[3]


def measure(
    broadcast_id: int,
    *,
    kind: str,
    meter: Meter,
    sink_before: int,
    sink: Sink,
    workers: list[int],
    sessions: int,
    size: int,
    timeout: float,
) -> Run:
    """Wait for the broadcast to be sent, then read its times and the baseline for its size."""
    from django.db.models import Max, Min

    from mimamori.broadcasts.models import Broadcast, Delivery, DeliveryStatus

    finished = wait_until_sent(broadcast_id, timeout)
    peaks = [common.peak_rss_kb(pid) for pid in workers]
    worker_cpu, web_cpu, postgres_cpu, sink_cpu = meter.spent()
    counted = sink.count() - sink_before
    broadcast = Broadcast.objects.get(pk=broadcast_id)
    if not finished:
        raise RuntimeError(f"broadcast not sent in time: {broadcast.status}, sink counted {counted}")
    times = Delivery.objects.filter(broadcast_id=broadcast_id, status=DeliveryStatus.ACCEPTED).aggregate(
        first=Min("accepted_at"), last=Max("accepted_at")
    )
    assert broadcast.send_requested_at
    assert broadcast.fanned_out_at
    assert times["first"]
    assert times["last"]
    first = (times["first"] - broadcast.send_requested_at).total_seconds()
    last = (times["last"] - broadcast.send_requested_at).total_seconds()
    messages = broadcast.message_count
    failed = Delivery.objects.filter(broadcast_id=broadcast_id, status=DeliveryStatus.FAILED)
    if failed.exists() or counted != messages:
        replies = list(failed.values_list("reply", flat=True).distinct()[:5])
        print(f"warning: sink counted {counted} of {messages}; {failed.count()} failed: {replies}")
    base = baseline(messages, sessions, size)
    rate, base_rate = messages / last, messages / base
    return Run(
        kind=kind,
        registrants=broadcast.registrant_count,
        messages=messages,
        failed=failed.count(),
        first_s=round(first, 3),
        last_s=round(last, 3),
        # fanned_out_at is stamped when the last slice has been written.
        fan_out_s=round((broadcast.fanned_out_at - broadcast.send_requested_at).total_seconds(), 3),
        msgs_per_s=round(rate, 1),
        sink_counted=counted,
        worker_peak_rss_mb=round(max(peaks) / 1024, 1),
        worker_cpu_ms_per_msg=round(worker_cpu * 1000 / messages, 3),
        web_cpu_ms_per_msg=round(web_cpu * 1000 / messages, 3),
        postgres_cpu_ms_per_msg=round(postgres_cpu * 1000 / messages, 3),
        sink_cpu_ms_per_msg=round(sink_cpu * 1000 / messages, 3),
        workers_total_peak_rss_mb=round(sum(peaks) / 1024, 1),
        baseline_s=round(base, 3),
        baseline_msgs_per_s=round(base_rate, 1),
        ratio=round(rate / base_rate, 3),
    )


def generated_run(args: argparse.Namespace, database_url: str, data_dir: Path, size: int, number: int) -> Run:
    """One urgent broadcast to the generated registrants, through --workers fresh workers."""
    reset_broadcasts()
    sink = Sink()
    environment = worker_environment(database_url, data_dir, sink.port, args.connections)
    workers = start_workers(args, environment, data_dir)
    profiler = None
    try:
        wait_until_polling(workers, data_dir)
        time.sleep(args.warmup)  # the sweep's first round; not part of the send
        meter = Meter([w.pid for w in workers], None, sink.process.pid)
        if args.profile and number == 0:
            profiler = start_profiler(workers[0].pid, args)
        broadcast_id = send_broadcast()
        sessions = len(workers) * args.connections
        return measure(
            broadcast_id,
            kind="urgent",
            meter=meter,
            sink_before=0,
            sink=sink,
            workers=[w.pid for w in workers],
            sessions=sessions,
            size=size,
            timeout=max(120.0, args.registrants / 50),
        )
    finally:
        if profiler is not None:
            stop_profiler(profiler)
        stop_workers(workers)
        sink.stop()


def users_path(args: argparse.Namespace, database_url: str, data_dir: Path) -> tuple[list[Run], list[Any]]:
    """Import the rosters, then per run a normal and an urgent broadcast, all through `mimamori run`."""
    from bench import users

    sink = Sink()
    installation = users.Installation(
        database_url,
        data_dir,
        f"smtp://127.0.0.1:{sink.port}",
        ("MIMAMORI_SMTP_CONNECTIONS", str(args.connections)),
    )
    runs: list[Run] = []
    imports: list[Any] = []
    try:
        with installation.running():
            workers = installation.worker_pids()
            print(f"mimamori run: {len(workers)} worker processes, web pid {installation.process.pid}")  # type: ignore[union-attr]
            installation.sign_in_as_centre()
            schools = installation.create_city("bench", -(-args.registrants // users.SCHOOL_SIZE))
            left = args.registrants
            for school in schools:
                imported = installation.import_roster(school, min(left, users.SCHOOL_SIZE))
                left -= imported.rows
                imports.append(imported)
                print(f"imported {imported}", flush=True)
            size = sample_mail_size()
            profiler = start_profiler(workers[0], args) if args.profile else None
            try:
                for number in range(args.runs):
                    for kind in ("normal", "urgent"):
                        time.sleep(args.warmup)
                        meter = Meter(workers, installation.process.pid, sink.process.pid)  # type: ignore[union-attr]
                        before = sink.count()
                        broadcast_id = installation.broadcast(
                            "bench", urgent=kind == "urgent", subject=SUBJECT, body=BODY
                        )
                        run = measure(
                            broadcast_id,
                            kind=kind,
                            meter=meter,
                            sink_before=before,
                            sink=sink,
                            workers=workers,
                            sessions=len(workers) * args.connections,
                            size=size,
                            timeout=max(120.0, args.registrants / 50),
                        )
                        print(f"run {number + 1} {kind}: {asdict(run)}", flush=True)
                        runs.append(run)
            finally:
                if profiler is not None:
                    stop_profiler(profiler)
    finally:
        sink.stop()
        if os.environ.get("BENCH_KEEP_LOG"):
            shutil.copy(data_dir / "run.log", os.environ["BENCH_KEEP_LOG"])
    return runs, imports


# ---------------------------------------------------------------- profiling


def start_profiler(pid: int, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy sampling one worker, collapsed stacks to bench/results/."""
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    out = common.RESULTS / f"fanout-pyspy-{args.registrants}-{os.getpid()}.txt"
    # py-spy on PATH if there is one, else uvx fetches it.
    spy = [found] if (found := shutil.which("py-spy")) else [shutil.which("uvx") or "uvx", "py-spy"]
    process = subprocess.Popen(
        [*spy, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(out), "--threads", "--gil"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return process, out


def stop_profiler(profiler: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, out = profiler
    process.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    print(f"py-spy collapsed stacks: {out}")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--registrants", type=int, default=10_000, help="default 10,000 (try 100000, 1000000)"
    )
    parser.add_argument(
        "--generated",
        action="store_true",
        help="rows written by the bench and --workers extra workers, instead of the users' path",
    )
    # Two per CPU: a worker's SMTP threads spend most of their time waiting for replies, so one
    # process per CPU leaves CPUs idle (2 workers: ~1,300 msg/s here; 4: ~2,500; 6: the same).
    parser.add_argument(
        "--workers", type=int, default=2 * (os.cpu_count() or 1), help="--generated: worker processes"
    )
    parser.add_argument(
        "--connections", type=int, default=4, help="MIMAMORI_SMTP_CONNECTIONS per worker (default 4)"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="--generated: idle poll interval (s)")
    parser.add_argument("--runs", type=int, default=3, help="repetitions; medians reported (default 3)")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds of quiet before each send (default 1)"
    )
    parser.add_argument("--embedded", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="py-spy the first worker")
    parser.add_argument(
        "--admin-url", default=common.ADMIN_URL, help="PostgreSQL to make the throwaway DB on"
    )
    args = parser.parse_args(argv)

    common.ensure_postfix_tools()
    data_dir = Path(tempfile.mkdtemp(prefix="mimamori-bench-"))
    imports: list[Any] = []
    try:
        with common.database(args.embedded, data_dir, args.admin_url) as database_url:
            common.django_for(database_url, data_dir, EMAIL_URL="smtp://127.0.0.1:9")
            if args.generated:
                started = time.monotonic()
                populate(args.registrants)
                print(f"populated {args.registrants} registrants in {time.monotonic() - started:.1f} s")
                size = sample_mail_size()
                runs = []
                for number in range(args.runs):
                    run = generated_run(args, database_url, data_dir, size, number)
                    print(f"run {number + 1}: {asdict(run)}", flush=True)
                    runs.append(run)
            else:
                runs, imports = users_path(args, database_url, data_dir)
                size = sample_mail_size()
            from django.db import connections

            connections.close_all()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    report(args, runs, size, imports)
    return 0


def report(args: argparse.Namespace, runs: list[Run], size: int, imports: list[Any]) -> None:
    path = "generated rows" if args.generated else "users' path (import-roster, REST API, mimamori run)"
    engine = "SQLite" if args.embedded else "PostgreSQL"
    workers = f", {args.workers} workers" if args.generated else ""
    print(f"\nFan-out: {runs[0].registrants} registrants, {path}, {engine}{workers}, mail {size} bytes")
    if imports:
        seconds = sum(i.seconds for i in imports)
        print(
            f"import-roster: {len(imports)} file(s) of up to {max(i.rows for i in imports)} rows,"
            f" {seconds:.1f} s in all ({', '.join(f'{i.seconds:.1f}' for i in imports)} s),"
            f" peak RSS {max(i.peak_rss_mb for i in imports):.0f} MB"
        )
    columns = [
        ("messages", "messages"),
        ("first s", "first_s"),
        ("last s", "last_s"),
        ("fan-out done s", "fan_out_s"),
        ("msg/s", "msgs_per_s"),
        ("sink", "sink_counted"),
        ("failed", "failed"),
        ("worker RSS MB", "worker_peak_rss_mb"),
        ("CPU ms/msg workers", "worker_cpu_ms_per_msg"),
        ("web", "web_cpu_ms_per_msg"),
        ("PG", "postgres_cpu_ms_per_msg"),
        ("sink", "sink_cpu_ms_per_msg"),
        ("smtp-source msg/s", "baseline_msgs_per_s"),
        ("ratio", "ratio"),
    ]
    medians: dict[str, dict[str, float]] = {}
    rows = []
    for kind in dict.fromkeys(r.kind for r in runs):
        mine = [r for r in runs if r.kind == kind]
        rows += [[kind, *[getattr(r, field) for _, field in columns]] for r in mine]
        medians[kind] = {f: round(common.median([getattr(r, f) for r in mine]), 3) for _, f in columns}
        rows.append([f"{kind} median", *[medians[kind][field] for _, field in columns]])
    print(common.table(["broadcast", *[title for title, _ in columns]], rows))
    written = common.write_results(
        "fanout",
        {
            "options": vars(args),
            "mail_bytes": size,
            "imports": [vars(i) for i in imports],
            "runs": [asdict(r) for r in runs],
            "median": medians,
        },
    )
    print(f"\nwrote {written}")


if __name__ == "__main__":
    raise SystemExit(main())

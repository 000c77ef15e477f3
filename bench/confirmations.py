"""Confirmation storm (issue 6, 1b/1d): N guardians press 「確認しました」 at once.

    uv run python -m bench.confirmations [--registrants 10000] [--runs 3] [--embedded] [--answers]

N registrants (one address each) get a broadcast requesting confirmation, fanned out directly
(no mail is sent); then a small asyncio client POSTs to /c/<token>/ once per token, 32 at a
time and each on a fresh connection, against the
production server set-up (gunicorn on a throwaway PostgreSQL database; --embedded: waitress on
SQLite, as `mimamori run` serves). The baseline, in the same run and on the same server, is
/healthz (no database). Every run checks that every confirmation was stored.

--answers (issue 15, B1) adds, in each run and against the same server, the answer storm: a
安否確認 broadcast to the same registrants, each guardian POSTing the form of the answer page
(answer-<registrant>=<choice>); it reports answers/s beside confirmations/s and checks that
every answer was stored and that the answer and confirmed counters equal the receipts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import common

SECRET = "bench-secret-key-not-for-production-0123456789abcdefghij"  # noqa: S105
SERVERS: dict[int, int] = {}  # port -> pid of the server(): gunicorn's master, or waitress
SCHOOLS, GRADES, CLASSES = 20, 6, 4


def ensure_wrk() -> str:
    with contextlib.suppress(FileNotFoundError):
        return common.which("wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=True, stdout=subprocess.DEVNULL)
    return common.which("wrk")


@contextlib.contextmanager
def server(
    database_url: str,
    data_dir: Path,
    *,
    workers: int,
    threads: int,
    worker_class: str = "sync",
    embedded: bool = False,
) -> Iterator[int]:
    """The production server set-up as a subprocess; yields its port, stops it afterwards."""
    port = common.free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        MIMAMORI_DATA_DIR=str(data_dir),
        SECRET_KEY=SECRET,
        DEBUG="0",
        LOG_LEVEL="WARNING",
        BASE_URL=f"http://127.0.0.1:{port}",
    )
    venv = Path(sys.executable).parent
    if embedded:
        # What `mimamori run` serves with: waitress, one process, `threads` threads.
        command = [
            str(venv / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            f"--threads={threads}",
            "--connection-limit=1000",
            "mimamori.wsgi:application",
        ]
    else:
        command = [
            str(venv / "gunicorn"),
            "mimamori.wsgi",
            f"--bind=127.0.0.1:{port}",
            f"--workers={workers}",
            f"--worker-class={worker_class}",
            *([f"--threads={threads}"] if worker_class == "gthread" else []),
            "--backlog=2048",
        ]
    process = subprocess.Popen(
        command,
        env=env,
        cwd=common.ROOT,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "server.log").open("ab"),
    )
    try:
        common.wait_for_port(port, 30)
        SERVERS[port] = process.pid
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def parse_wrk(output: str) -> dict[str, Any]:
    def ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    result: dict[str, Any] = {"non_2xx_3xx": 0, "socket_errors": 0}
    for pct in ("50", "99"):
        found = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        result[f"p{pct}_ms"] = ms(found.group(1)) if found else float("nan")
    found = re.search(r"(\d+) requests in", output)
    result["requests"] = int(found.group(1)) if found else 0
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    result["rps"] = float(found.group(1)) if found else 0.0
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if found:
        result["non_2xx_3xx"] = int(found.group(1))
    found = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if found:
        result["socket_errors"] = sum(int(g) for g in found.groups())
    return result


def wrk_fixed(
    wrk: str, url: str, *, threads: int, connections: int, seconds: int, extra: list[str]
) -> dict[str, Any]:
    """A fixed-duration wrk run (the baselines, the statistics page)."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    return parse_wrk(output)


def populate(registrants: int) -> Any:
    """SCHOOLS schools, registrants spread over their grades and classes, one address each."""
    from mimamori.accounts.models import User
    from mimamori.registry.models import Address, Municipality, Registrant, School

    city = Municipality.objects.create(code="bench", name="ベンチ市", broadcast_slots=[1, 2])
    schools = [
        School.objects.create(municipality=city, name=f"ベンチ第{i}小学校", sender_local_part=f"s{i}")
        for i in range(SCHOOLS)
    ]
    batch = 5000
    for start in range(0, registrants, batch):
        stop = min(start + batch, registrants)
        users = User.objects.bulk_create(
            User(username=f"g{i}", password="!")  # noqa: S106
            for i in range(start, stop)
        )
        people = Registrant.objects.bulk_create(
            Registrant(
                school=schools[i % SCHOOLS],
                account=user,
                child_name=f"児童{i}",
                grade=1 + (i // SCHOOLS) % GRADES,
                class_name=str(1 + (i // (SCHOOLS * GRADES)) % CLASSES),
            )
            for i, user in zip(range(start, stop), users, strict=True)
        )
        Address.objects.bulk_create(
            Address(registrant=p, slot=1, email=f"g{p.pk}@example.test") for p in people
        )
    return User.objects.create_user(username="bench-centre", password="!", role="centre")  # noqa: S106


def fanned_out_broadcast(centre: Any, subject: str, answers: list[str] | None = None) -> Any:
    """A broadcast to the whole city requesting confirmation (or, with ``answers``, a 安否確認),
    fanned out (no mail is sent)."""
    from django.utils import timezone

    from mimamori.broadcasts.fanout import fan_out
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus
    from mimamori.registry.models import Municipality

    broadcast = Broadcast.objects.create(
        created_by=centre,
        subject=subject,
        body="ベンチマークの本文です。",
        request_confirmation=True,
        answers=answers or [],
        status=BroadcastStatus.SENDING,
        send_requested_at=timezone.now(),
    )
    broadcast.municipalities.set(Municipality.objects.filter(code="bench"))
    while fan_out(broadcast.pk):  # every slice here; the tasks they queue are never run
        pass
    return broadcast


def stored(broadcast: Any) -> tuple[int, int]:
    from django.db.models import Sum

    from mimamori.broadcasts.models import AudienceGroup
    from mimamori.receipts.models import Receipt

    receipts = Receipt.objects.filter(broadcast=broadcast).count()
    confirmed = AudienceGroup.objects.filter(broadcast=broadcast).aggregate(n=Sum("confirmed"))["n"] or 0
    return receipts, confirmed


def load(port: int, requests: list[bytes], connections: int, *, latencies: bool = False) -> dict[str, Any]:
    """Send each request once, `connections` at a time, each on a connection of its own (as
    phones do; the sync server closes after every answer), and time each to its last byte
    (every request's time in seconds under "latencies" when asked).

    A small asyncio client rather than wrk: wrk cannot send a fixed list of requests exactly
    once, and stopping its threads when the list ends drops requests already taken from it.
    """
    import asyncio

    async def one(request: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status = await reader.readline()
            await reader.read()  # to the end: the answer is complete when the server closes
            writer.close()
            return int(status.split()[1]), time.perf_counter() - started
        except (OSError, ValueError, IndexError):
            return 0, time.perf_counter() - started

    async def run() -> list[tuple[int, float]]:
        pending = iter(requests)
        answers: list[tuple[int, float]] = []

        async def client() -> None:
            for request in pending:
                answers.append(await one(request))

        await asyncio.gather(*(client() for _ in range(connections)))
        return answers

    started = time.perf_counter()
    answers = asyncio.run(run())
    elapsed = time.perf_counter() - started
    timings = sorted(latency for _, latency in answers)
    return {
        "requests": len(answers),
        "seconds": round(elapsed, 3),
        "rps": len(answers) / elapsed,
        "p50_ms": round(1000 * timings[len(timings) // 2], 2),
        "p99_ms": round(1000 * percentile(timings, 0.99), 2),
        "errors": sum(1 for status, _ in answers if not 200 <= status < 400),
        "statuses": sorted({status for status, _ in answers}),
        **({"latencies": timings} if latencies else {}),
    }


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def http(method: str, path: str) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n"
    return f"{head}\r\n".encode()


def http_form(path: str, form: str) -> bytes:
    body = form.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    return f"{head}\r\n".encode() + body


def answer_storm(port: int, broadcast: Any, *, connections: int) -> dict[str, Any]:
    """Every guardian answers the 安否確認 once, as the page's form posts it."""
    from django.db.models import F, Sum, Value

    from mimamori.broadcasts.models import AudienceGroup, Recipient

    mails = Recipient.objects.filter(broadcast=broadcast).values_list(
        "delivery__confirmation_token", "registrant_id"
    )
    choices = len(broadcast.answers)
    requests = [
        http_form(f"/c/{token}/", f"answer-{registrant}={registrant % choices}")
        for token, registrant in mails
    ]
    result = timed_load(port, requests, connections)
    result["answers"] = len(requests)
    result["receipts"], result["confirmed"] = stored(broadcast)
    answers = sum((F(name) for name in AudienceGroup.ANSWER_FIELDS), Value(0))
    result["counted"] = AudienceGroup.objects.filter(broadcast=broadcast).aggregate(n=Sum(answers))["n"] or 0
    result["lost"] = len(requests) - result["receipts"]
    return result


def warm_up(port: int, workers: int) -> None:
    """Each server process imports and loads its URLs, templates and database connection on
    its first requests; a server that has been up for a while has done so long ago."""
    load(port, [http("GET", "/healthz"), http("GET", "/c/" + "0" * 60 + "/")] * workers * 8, workers)


def cpu_split(port: int) -> tuple[float, float, float]:
    """CPU seconds so far of the web server (its master and workers), of every PostgreSQL
    process and of this process, which is the load generator."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    return (
        common.cpu_seconds(SERVERS[port]),
        sum(common.postgres_cpu_seconds().values()),
        me.ru_utime + me.ru_stime,
    )


def timed_load(port: int, requests: list[bytes], connections: int) -> dict[str, Any]:
    """load(), with the CPU each request cost the web server, PostgreSQL and this process, in
    ms. PostgreSQL backends that ended during the storm are not counted; the web workers keep
    theirs (CONN_MAX_AGE) for the length of a storm."""
    before = cpu_split(port)
    result = load(port, requests, connections)
    after = cpu_split(port)
    result["cpu_ms"] = dict(
        zip(
            ("web", "postgres", "load generator"),
            (round((b - a) * 1000 / len(requests), 3) for a, b in zip(before, after, strict=True)),
            strict=True,
        )
    )
    return result


def storm(port: int, broadcast: Any, *, connections: int) -> dict[str, Any]:
    from mimamori.broadcasts.models import Delivery

    tokens = list(Delivery.objects.filter(broadcast=broadcast).values_list("confirmation_token", flat=True))
    requests = [http("POST", f"/c/{token}/") for token in tokens]
    result = timed_load(port, requests, connections)
    result["confirmations"] = len(tokens)
    result["receipts"], result["confirmed"] = stored(broadcast)
    result["lost"] = len(tokens) - result["receipts"]
    return result


def profile(port_less_requests: int, broadcast: Any) -> dict[str, Any]:
    """cProfile of the confirmation path in this process (Django test client, no server)."""
    import cProfile
    import io
    import pstats

    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from mimamori.broadcasts.models import Delivery

    client = Client(HTTP_HOST="127.0.0.1")
    tokens = list(Delivery.objects.filter(broadcast=broadcast).values_list("confirmation_token", flat=True))
    tokens = tokens[:port_less_requests]
    with CaptureQueriesContext(connection) as queries:
        client.post(f"/c/{tokens[0]}/")
    statements = [q["sql"][:90] for q in queries.captured_queries]
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for token in tokens[1:]:
        response = client.post(f"/c/{token}/")
        assert response.status_code == 303, response.status_code
    profiler.disable()
    per_request_ms = (time.perf_counter() - started) * 1000 / (len(tokens) - 1)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(35)
    print(out.getvalue())
    print(f"{len(statements)} statements per confirmation:")
    for sql in statements:
        print("   ", sql)
    print(f"in-process: {per_request_ms:.2f} ms per confirmation (under cProfile)")
    return {"statements": len(statements), "sql": statements, "ms_per_request_profiled": per_request_ms}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.confirmations", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--registrants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1), help="gunicorn workers")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"], help="gunicorn's -k")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (gthread; waitress)")
    parser.add_argument("--connections", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--embedded", action="store_true", help="SQLite and waitress, as `mimamori run`")
    parser.add_argument("--answers", action="store_true", help="also the 安否確認 answer storm (issue 15)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="only cProfile N in-process POSTs"
    )
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mimamori-bench-")))
        if args.embedded:
            database_url = f"sqlite:///{workdir / 'mimamori.sqlite3'}"
        else:
            database_url = stack.enter_context(common.throwaway_postgres(tag="confirm"))
        common.django_for(database_url, workdir, SECRET_KEY=SECRET, LOG_LEVEL="WARNING")
        from django.db import connection

        setup_started = time.monotonic()
        centre = populate(args.registrants)
        print(f"{args.registrants} registrants in {time.monotonic() - setup_started:.1f} s", flush=True)
        if args.profile:
            profile(args.profile, fanned_out_broadcast(centre, "プロファイル"))
            return 0
        runs: list[dict[str, Any]] = []
        port = stack.enter_context(
            server(
                database_url,
                workdir,
                workers=args.workers,
                threads=args.threads,
                worker_class=args.worker_class,
                embedded=args.embedded,
            )
        )
        warm_up(port, args.workers)
        for run in range(args.runs):
            broadcast = fanned_out_broadcast(centre, f"ベンチ {run + 1}")
            connection.close()
            result = storm(port, broadcast, connections=args.connections)
            result["baseline"] = load(port, [http("GET", "/healthz")] * args.registrants, args.connections)
            result["ratio"] = result["rps"] / result["baseline"]["rps"]
            if args.answers:
                asking = fanned_out_broadcast(
                    centre, f"安否確認 {run + 1}", ["無事です", "けがをしています", "支援が必要です"]
                )
                connection.close()
                answered = answer_storm(port, asking, connections=args.connections)
                answered["ratio_to_confirmations"] = answered["rps"] / result["rps"]
                result["answer_storm"] = answered
                print(
                    f"run {run + 1}: {answered['rps']:.0f} answers/s"
                    f" ({answered['ratio_to_confirmations']:.2f} × the confirmations),"
                    f" p50 {answered['p50_ms']:.1f} ms, p99 {answered['p99_ms']:.1f} ms,"
                    f" lost {answered['lost']}, counted {answered['counted']}/{answered['answers']};"
                    f" CPU ms per answer {answered['cpu_ms']}",
                    flush=True,
                )
            runs.append(result)
            print(
                f"run {run + 1}: {result['rps']:.0f} confirmations/s"
                f" (healthz {result['baseline']['rps']:.0f}/s),"
                f" p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, lost {result['lost']};"
                f" CPU ms per confirmation {result['cpu_ms']}",
                flush=True,
            )

    def med(key: str, source: str | None = None) -> float:
        return common.median([(r[source] if source else r)[key] for r in runs])

    summary = {
        "confirmations_per_s": med("rps"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "healthz_per_s": med("rps", "baseline"),
        "healthz_p50_ms": med("p50_ms", "baseline"),
        "healthz_p99_ms": med("p99_ms", "baseline"),
        "ratio": med("ratio"),
        "errors": sum(r["errors"] + r["baseline"]["errors"] for r in runs),
        "lost": sum(r["lost"] for r in runs),
        "counter_mismatch": sum(r["confirmations"] - r["confirmed"] for r in runs)
        + sum(
            abs(r["answer_storm"]["answers"] - r["answer_storm"]["confirmed"])
            + abs(r["answer_storm"]["answers"] - r["answer_storm"]["counted"])
            for r in runs
            if "answer_storm" in r
        ),
        "cpu_ms": {part: common.median([r["cpu_ms"][part] for r in runs]) for part in runs[0]["cpu_ms"]},
    }
    mode = (
        "embedded (SQLite, waitress)"
        if args.embedded
        else f"gunicorn -k {args.worker_class} -w {args.workers}, PostgreSQL"
    )
    print()
    print(f"Confirmation storm: {args.registrants} confirmations × {args.runs} runs, {mode}, medians")
    print(
        common.table(
            ["what", "req/s", "p50 ms", "p99 ms"],
            [
                [
                    "POST /c/<token>/",
                    f"{summary['confirmations_per_s']:.0f}",
                    f"{summary['p50_ms']:.1f}",
                    f"{summary['p99_ms']:.1f}",
                ],
                [
                    "GET /healthz (baseline)",
                    f"{summary['healthz_per_s']:.0f}",
                    f"{summary['healthz_p50_ms']:.1f}",
                    f"{summary['healthz_p99_ms']:.1f}",
                ],
            ],
        )
    )
    print(
        f"ratio {summary['ratio']:.3f}; errors {summary['errors']}; lost {summary['lost']};"
        f" counter mismatch {summary['counter_mismatch']}; CPU ms per confirmation {summary['cpu_ms']}"
    )
    if args.answers:
        storms = [r["answer_storm"] for r in runs]
        summary["answers_per_s"] = common.median([a["rps"] for a in storms])
        summary["answers_p99_ms"] = common.median([a["p99_ms"] for a in storms])
        summary["answers_to_confirmations"] = common.median([a["ratio_to_confirmations"] for a in storms])
        summary["lost"] += sum(a["lost"] for a in storms)
        summary["errors"] += sum(a["errors"] for a in storms)
        print(
            f"Answer storm: {summary['answers_per_s']:.0f} answers/s, p99 {summary['answers_p99_ms']:.1f} ms,"
            f" {summary['answers_to_confirmations']:.2f} × the confirmation storm in the same runs"
        )
    path = common.write_results(
        "confirmations-embedded" if args.embedded else "confirmations",
        {"args": vars(args), "summary": summary, "runs": runs},
    )
    print(f"wrote {path.relative_to(common.ROOT)}")
    return 0 if summary["lost"] == 0 and summary["counter_mismatch"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Answer storm beside the confirmation storm, on the users' path (issue 15, B1).

    uv run python -m bench.answers [--registrants 10000] [--runs 3] [--chunks 10] [--embedded]

**Users' path**: a throwaway PostgreSQL database (--embedded: SQLite); `mimamori run` as an
operator starts it, with EMAIL_URL at a relay stand-in in this process; a municipality and
schools through the REST API; rosters imported with `mimamori import-roster` (bench/users.py).
Each run sends two broadcasts to the whole city through the REST API and waits until the relay
has every mail: a bare read confirmation and a 安否確認 with three answer choices. The links
are read from the mails the relay received, as guardians read them; each 安否確認 page is opened
(GET, not timed) to learn its form, as a guardian's phone does before the button is pressed.

Then, against the same `mimamori run` in the same run, every guardian presses 「確認しました」
(POST /c/<token>/) and every guardian answers (POST /c/<token>/ with the page's form, one
choice for each child), 32 requests in flight, each on a connection of its own
(bench/confirmations.py's client). Guardians come in a shuffled order (a city's phones do not
answer class by class), the same for both broadcasts of a run.

**Interleaved**, because the machine drifts: the two storms are cut into --chunks parts of the
same guardians and run in turn, confirmations and answers alternating which goes first
(C A A C C A …), so that whatever slows the machine down during a run (another process, the
database's autovacuum, a growing table) falls on both alike. A storm run whole after the other
measured the same code at ratios from 0.76 to 1.03 in five runs on a quiet machine
(docs/performance.md).

Reported for each kind: requests/s over its chunks, p50 and p99 of all its requests, the CPU per
request of the web process and of this database's PostgreSQL backends, and **ratio = answers/s
÷ confirmations/s of the same run** (the acceptance asks ≥ 1 with p99 < 100 ms and nothing
lost); every run checks that every answer is stored and that the answer and confirmed counters
equal the receipts.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/answers.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench import common, users
from bench.confirmations import http, http_form, load, percentile
from mimamori.mail.devmailbox import Pipelining

CHOICES = ["無事です", "けがをしています", "支援が必要です"]
SUBJECT = {"confirm": "不審者情報（ベンチ {n}）", "answer": "安否確認（ベンチ {n}）"}
BODY = "本日15時ごろ、学校周辺で不審者の目撃情報がありました。\nご家庭でも声かけをお願いします。"
LINK = re.compile(r"/c/([0-9a-f]{40,64})/")
FIELD = re.compile(r'name="(answer-\d+)"')


class Relay(Pipelining):
    """The relay stand-in: accepts every mail and keeps each one's address and confirmation link."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.links: list[tuple[str, str]] = []  # (address, link) of every mail received

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        body = message.get_body(("plain",))
        link = LINK.search(str(body.get_content()) if body is not None else "")
        if link:
            with self.lock:
                self.links.append((",".join(envelope.rcpt_tos), link.group(1)))
        return "250 OK queued"

    def count(self) -> int:
        with self.lock:
            return len(self.links)

    def take(self, run: int) -> list[str]:
        """Every link received so far (one broadcast's, as the bench sends one at a time), in an
        order of the addresses shuffled by the run's number: the same for both broadcasts."""
        with self.lock:
            received = sorted(self.links)
            self.links.clear()
        random.Random(run).shuffle(received)
        return [link for _, link in received]


def send_and_collect(
    installation: users.Installation, relay: Relay, kind: str, run: int
) -> tuple[int, list[str]]:
    """One broadcast to the whole city through the REST API; its links, once every mail is in."""
    assert installation.api is not None
    body: dict[str, Any] = {
        "scope": {"municipality": "bench"},
        "subject": SUBJECT[kind].format(n=run),
        "body": BODY,
        "request_confirmation": True,
        "urgent": True,
    }
    if kind == "answer":
        body["answers"] = CHOICES
    draft = installation.api("POST", "/broadcasts", body)
    installation.api("POST", f"/broadcasts/{draft['id']}/send")
    deadline = time.monotonic() + 600
    while True:
        status = installation.status(draft["id"])
        if status["status"] == "sent" and relay.count() >= status["counts"]["messages"]:
            return int(draft["id"]), relay.take(run)
        if time.monotonic() > deadline:
            raise TimeoutError(f"broadcast {draft['id']} was not delivered in 600 s")
        time.sleep(0.5)


def answer_forms(port: int, links: list[str]) -> list[bytes]:
    """Open each 安否確認 page (GET) and fill its form: one choice per child it names. In the
    links' order."""
    forms: list[bytes] = [b""] * len(links)

    def fetch(numbers: range) -> None:
        import http.client

        for number in numbers:
            token = links[number]
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/c/{token}/")
            page = connection.getresponse().read().decode()
            connection.close()
            fields = FIELD.findall(page)
            assert fields, f"no answer form on /c/{token}/"
            form = "&".join(f"{name}={int(name.split('-')[1]) % len(CHOICES)}" for name in fields)
            forms[number] = http_form(f"/c/{token}/", form)

    threads = [threading.Thread(target=fetch, args=(range(n, len(links), 8),)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return forms


def stored(broadcast_id: int) -> dict[str, int]:
    from django.db.models import F, Sum, Value

    from mimamori.broadcasts.models import AudienceGroup
    from mimamori.receipts.models import Receipt

    answers = sum((F(name) for name in AudienceGroup.ANSWER_FIELDS), Value(0))

    return {
        "receipts": Receipt.objects.filter(broadcast_id=broadcast_id).count(),
        "answered": Receipt.objects.filter(broadcast_id=broadcast_id, answer__isnull=False).count(),
        "confirmed": AudienceGroup.objects.filter(broadcast_id=broadcast_id).aggregate(n=Sum("confirmed"))[
            "n"
        ]
        or 0,
        "counted": AudienceGroup.objects.filter(broadcast_id=broadcast_id).aggregate(n=Sum(answers))["n"]
        or 0,
    }


def backends() -> list[int]:
    """The PostgreSQL processes serving this database's clients (the web threads' connections
    among them), not the server's own: autovacuum and the writers run on their own time."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        return [pid for (pid,) in cursor.fetchall()]


def storms(
    installation: users.Installation,
    requests: dict[str, list[bytes]],
    connections: int,
    run: int,
    chunks: int,
) -> dict[str, dict[str, Any]]:
    """Both storms, interleaved: part n of each kind covers the same guardians, and which kind
    goes first alternates (C A A C C A … on odd runs, A C C A … on even ones)."""
    assert installation.process is not None
    web = installation.process.pid  # waitress serves in `mimamori run`'s own process
    size = -(-max(len(found) for found in requests.values()) // chunks)
    totals: dict[str, dict[str, Any]] = {
        kind: {"requests": 0, "seconds": 0.0, "errors": 0, "latencies": [], "web": 0.0, "postgres": 0.0}
        for kind in requests
    }
    time.sleep(2)  # the workers' last chunk settles
    for part in range(chunks):
        for kind in ("confirm", "answer") if (part + run) % 2 else ("answer", "confirm"):
            serving = backends()
            before = common.cpu_of([web]), {pid: common.cpu_of([pid]) for pid in serving}
            result = load(
                installation.port,
                requests[kind][part * size : (part + 1) * size],
                connections,
                latencies=True,
            )
            after = common.cpu_of([web]), {pid: common.cpu_of([pid]) for pid in serving}
            total = totals[kind]
            total["requests"] += result["requests"]
            total["seconds"] += result["seconds"]
            total["errors"] += result["errors"]
            total["latencies"].extend(result["latencies"])
            total["web"] += after[0] - before[0]
            # A backend that ended meanwhile (CONN_MAX_AGE) reads 0 after: left out.
            total["postgres"] += sum(after[1][pid] - before[1][pid] for pid in serving if after[1][pid])
    summary = {}
    for kind, total in totals.items():
        timings = sorted(total["latencies"])
        summary[kind] = {
            "requests": total["requests"],
            "seconds": round(total["seconds"], 3),
            "rps": total["requests"] / total["seconds"],
            "p50_ms": round(1000 * timings[len(timings) // 2], 2),
            "p99_ms": round(1000 * percentile(timings, 0.99), 2),
            "errors": total["errors"],
            "cpu_ms": {
                "web": round(total["web"] * 1000 / total["requests"], 3),
                "postgres backends": round(total["postgres"] * 1000 / total["requests"], 3),
            },
        }
    return summary


def one_run(
    installation: users.Installation, relay: Relay, run: int, connections: int, chunks: int
) -> dict[str, Any]:
    confirm_id, confirm_links = send_and_collect(installation, relay, "confirm", run)
    answer_id, answer_links = send_and_collect(installation, relay, "answer", run)
    forms = answer_forms(installation.port, answer_links)
    presses = [http("POST", f"/c/{token}/") for token in confirm_links]
    measured = storms(installation, {"confirm": presses, "answer": forms}, connections, run, chunks)
    measured["confirm"].update(stored(confirm_id))
    measured["answer"].update(stored(answer_id))
    answered = measured["answer"]
    return {
        "mails": len(confirm_links),
        "confirm": measured["confirm"],
        "answer": answered,
        "ratio": answered["rps"] / measured["confirm"]["rps"],
        "lost": (len(confirm_links) - measured["confirm"]["receipts"]) + (len(forms) - answered["answered"]),
        "counter_mismatch": abs(measured["confirm"]["receipts"] - measured["confirm"]["confirmed"])
        + abs(answered["receipts"] - answered["confirmed"])
        + abs(answered["answered"] - answered["counted"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrants", type=int, default=10_000, help="default 10,000")
    parser.add_argument("--runs", type=int, default=3, help="default 3; medians reported")
    parser.add_argument("--connections", type=int, default=32, help="requests in flight at once")
    parser.add_argument("--chunks", type=int, default=10, help="parts each storm is cut into (default 10)")
    parser.add_argument("--embedded", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--admin-url", default=common.ADMIN_URL, help="PostgreSQL to make the throwaway DB on"
    )
    args = parser.parse_args(argv)

    relay = Relay()
    smtp_port = common.free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    data_dir = Path(tempfile.mkdtemp(prefix="mimamori-bench-"))
    runs: list[dict[str, Any]] = []
    try:
        with common.database(args.embedded, data_dir, args.admin_url) as database_url:
            common.django_for(database_url, data_dir, EMAIL_URL=f"smtp://127.0.0.1:{smtp_port}")
            logging.getLogger("mail.log").setLevel(logging.WARNING)
            installation = users.Installation(database_url, data_dir, f"smtp://127.0.0.1:{smtp_port}")
            with installation.running():
                installation.sign_in_as_centre()
                schools = installation.create_city("bench", max(1, -(-args.registrants // 2_500)))
                left = args.registrants
                for school in schools:
                    imported = installation.import_roster(school, min(left, 2_500))
                    left -= imported.rows
                print(f"imported {args.registrants} registrants into {len(schools)} schools", flush=True)
                for number in range(1, args.runs + 1):
                    run = one_run(installation, relay, number, args.connections, args.chunks)
                    runs.append(run)
                    confirm, answer = run["confirm"], run["answer"]
                    print(
                        f"run {number}: confirmations {confirm['rps']:.0f}/s"
                        f" (p99 {confirm['p99_ms']:.1f} ms),"
                        f" answers {answer['rps']:.0f}/s (p99 {answer['p99_ms']:.1f} ms),"
                        f" ratio {run['ratio']:.2f};"
                        f" lost {run['lost']}, counter mismatch {run['counter_mismatch']};"
                        f" CPU ms per confirmation {confirm['cpu_ms']},"
                        f" per answer {answer['cpu_ms']}",
                        flush=True,
                    )
            from django.db import connections

            connections.close_all()
    finally:
        controller.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    def med(kind: str, key: str) -> float:
        return common.median([run[kind][key] for run in runs])

    summary = {
        "confirmations_per_s": med("confirm", "rps"),
        "confirm_p99_ms": med("confirm", "p99_ms"),
        "answers_per_s": med("answer", "rps"),
        "answer_p50_ms": med("answer", "p50_ms"),
        "answer_p99_ms": med("answer", "p99_ms"),
        "ratio": common.median([run["ratio"] for run in runs]),
        "errors": sum(run[kind]["errors"] for run in runs for kind in ("confirm", "answer")),
        "lost": sum(run["lost"] for run in runs),
        "counter_mismatch": sum(run["counter_mismatch"] for run in runs),
    }
    engine = "SQLite" if args.embedded else "PostgreSQL"
    print(
        f"\nAnswer storm: {runs[0]['mails']} guardians × {args.runs} runs; users' path (import-roster, "
        f"REST API, links from the mails, mimamori run), {engine}; medians"
    )
    print(
        common.table(
            ["what", "req/s", "p50 ms", "p99 ms"],
            [
                [
                    "POST /c/<token>/ 確認しました (baseline)",
                    f"{summary['confirmations_per_s']:.0f}",
                    f"{med('confirm', 'p50_ms'):.1f}",
                    f"{summary['confirm_p99_ms']:.1f}",
                ],
                [
                    "POST /c/<token>/ with an answer",
                    f"{summary['answers_per_s']:.0f}",
                    f"{summary['answer_p50_ms']:.1f}",
                    f"{summary['answer_p99_ms']:.1f}",
                ],
            ],
        )
    )
    print(
        f"ratio answers ÷ confirmations {summary['ratio']:.2f}; errors {summary['errors']};"
        f" lost {summary['lost']}; counter mismatch {summary['counter_mismatch']}"
    )
    path = common.write_results(
        "answers-embedded" if args.embedded else "answers",
        {"args": vars(args), "summary": summary, "runs": runs},
    )
    print(f"wrote {path.relative_to(common.ROOT)}")
    return 0 if summary["lost"] == 0 and summary["counter_mismatch"] == 0 and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

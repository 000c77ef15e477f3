"""Answer storm beside the confirmation storm, on the users' path (issue 15, B1).

    uv run python -m bench.answers [--registrants 10000] [--runs 3] [--embedded]

**Users' path**: a throwaway PostgreSQL database (--embedded: SQLite); `mimamori run` as an
operator starts it, with EMAIL_URL at a relay stand-in in this process; a municipality and
schools through the REST API; rosters imported with `mimamori import-roster` (bench/users.py).
Each run sends two broadcasts to the whole city through the REST API and waits until the relay
has every mail: a bare read confirmation and a 安否確認 with three answer choices. The links
are read from the mails the relay received, as guardians read them; each 安否確認 page is opened
(GET, not timed) to learn its form, as a guardian's phone does before the button is pressed.

Then, against the same `mimamori run` in the same run, in turn (the order alternates between
runs): every guardian presses 「確認しました」 (POST /c/<token>/), and every guardian answers
(POST /c/<token>/ with the page's form, one choice for the child), 32 requests in flight, each
on a connection of its own (bench/confirmations.py's client). Reported: requests/s, p50 and
p99, and **ratio = answers/s ÷ confirmations/s of the same run** (the acceptance asks ≥ 1 with
p99 < 100 ms and nothing lost); every run checks that every answer is stored and that the
answer and confirmed counters equal the receipts.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
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
from bench.confirmations import http, http_form, load
from mimamori.mail.devmailbox import Pipelining

CHOICES = ["無事です", "けがをしています", "支援が必要です"]
SUBJECT = {"confirm": "不審者情報（ベンチ {n}）", "answer": "安否確認（ベンチ {n}）"}
BODY = "本日15時ごろ、学校周辺で不審者の目撃情報がありました。\nご家庭でも声かけをお願いします。"
LINK = re.compile(r"/c/([0-9a-f]{40,64})/")
FIELD = re.compile(r'name="(answer-\d+)"')


class Relay(Pipelining):
    """The relay stand-in: accepts every mail and keeps each one's confirmation link, by subject."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.links: dict[str, list[str]] = {}  # subject → the links in the mails carrying it

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        body = message.get_body(("plain",))
        link = LINK.search(str(body.get_content()) if body is not None else "")
        if link:
            with self.lock:
                self.links.setdefault(str(message["Subject"]), []).append(link.group(1))
        return "250 OK queued"

    def count(self) -> int:
        with self.lock:
            return sum(len(links) for links in self.links.values())

    def take(self) -> list[str]:
        """Every link received so far (one broadcast's, as the bench sends one at a time)."""
        with self.lock:
            links = [link for found in self.links.values() for link in found]
            self.links.clear()
        return links


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
            return int(draft["id"]), relay.take()
        if time.monotonic() > deadline:
            raise TimeoutError(f"broadcast {draft['id']} was not delivered in 600 s")
        time.sleep(0.5)


def answer_forms(port: int, links: list[str]) -> list[bytes]:
    """Open each 安否確認 page (GET) and fill its form: one choice per child it names."""
    forms: list[bytes] = []
    lock = threading.Lock()

    def fetch(chunk: list[str]) -> None:
        import http.client

        for token in chunk:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", f"/c/{token}/")
            page = connection.getresponse().read().decode()
            connection.close()
            fields = FIELD.findall(page)
            assert fields, f"no answer form on /c/{token}/"
            form = "&".join(f"{name}={int(name.split('-')[1]) % len(CHOICES)}" for name in fields)
            with lock:
                forms.append(http_form(f"/c/{token}/", form))

    threads = [threading.Thread(target=fetch, args=(links[n::8],)) for n in range(8)]
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


def storm(installation: users.Installation, requests: list[bytes], connections: int) -> dict[str, Any]:
    assert installation.process is not None
    web = installation.process.pid  # waitress serves in `mimamori run`'s own process
    before = common.cpu_of([web]), sum(common.postgres_cpu_seconds().values())
    result = load(installation.port, requests, connections)
    after = common.cpu_of([web]), sum(common.postgres_cpu_seconds().values())
    result["cpu_ms"] = {
        "web": round((after[0] - before[0]) * 1000 / len(requests), 3),
        "postgres (every process on the machine)": round((after[1] - before[1]) * 1000 / len(requests), 3),
    }
    return result


def one_run(installation: users.Installation, relay: Relay, run: int, connections: int) -> dict[str, Any]:
    confirm_id, confirm_links = send_and_collect(installation, relay, "confirm", run)
    answer_id, answer_links = send_and_collect(installation, relay, "answer", run)
    forms = answer_forms(installation.port, answer_links)
    presses = [http("POST", f"/c/{token}/") for token in confirm_links]
    storms = {}
    for kind in ("confirm", "answer") if run % 2 else ("answer", "confirm"):
        time.sleep(2)  # the workers' last chunk settles
        storms[kind] = storm(installation, presses if kind == "confirm" else forms, connections)
    storms["confirm"].update(stored(confirm_id))
    storms["answer"].update(stored(answer_id))
    answered = storms["answer"]
    return {
        "mails": len(confirm_links),
        "confirm": storms["confirm"],
        "answer": answered,
        "ratio": answered["rps"] / storms["confirm"]["rps"],
        "lost": (len(confirm_links) - storms["confirm"]["receipts"]) + (len(forms) - answered["answered"]),
        "counter_mismatch": abs(storms["confirm"]["receipts"] - storms["confirm"]["confirmed"])
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
                    run = one_run(installation, relay, number, args.connections)
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

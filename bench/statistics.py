"""Statistics page at 1M deliveries (issue 6, 1c): what a centre user's browser polls.

    uv run python -m bench.statistics [--registrants 500000] [--addresses 2] [--runs 3]

(Run it with -m: as a script, this file's name would hide the standard library's statistics.)
On a throwaway PostgreSQL database: registrants × addresses deliveries in one broadcast with
confirmation links, ~60% of registrants confirmed (Receipts spread over the first hour and
AudienceGroup counters set to match, in bulk SQL). Then GET the console statistics page and its
JSON endpoint as a logged-in centre user, in this process with Django's test client and through
gunicorn with wrk and the session cookie. Baseline in the same run: /healthz, the same ways.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench import common
from bench.confirmations import SECRET, ensure_wrk, server, wrk_fixed

SCHOOLS, GRADES, CLASSES = 50, 6, 4
CONFIRMED_TENTHS = 6


def populate(registrants: int, addresses: int) -> Any:
    """Registrants over SCHOOLS × GRADES × CLASSES, `addresses` addresses each, written by the database."""
    from django.db import connection, transaction
    from django.utils import timezone

    from mimamori.accounts.models import Role, User
    from mimamori.registry.models import Municipality, School

    with transaction.atomic():
        city = Municipality.objects.create(code="bench", name="ベンチ市", broadcast_slots=[1, 2])
        schools = [
            School.objects.create(municipality=city, name=f"ベンチ第{n + 1}小学校", sender_local_part=f"s{n}")
            for n in range(SCHOOLS)
        ]
        first = min(s.pk for s in schools)
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name, email,"
                " is_staff, is_active, date_joined, role)"
                " SELECT '!', false, 'g' || i, '', '', '', false, true, %s, ''"
                " FROM generate_series(1, %s) i",
                [now, registrants],
            )
            cursor.execute(
                "INSERT INTO registry_registrant (school_id, account_id, child_name, child_name_kana, grade,"
                " class_name, status, receive_broadcasts, registration_code_digest, created_at, updated_at)"
                " SELECT %s + (u.id %% %s), u.id, '児童' || u.id, '', 1 + (u.id / %s) %% %s,"
                " CAST(1 + (u.id / %s) %% %s AS TEXT), 'active', true, '', %s, %s"
                " FROM accounts_user u WHERE u.username LIKE 'g%%'",
                [first, SCHOOLS, SCHOOLS, GRADES, SCHOOLS * GRADES, CLASSES, now, now],
            )
            cursor.execute(
                "INSERT INTO registry_address (registrant_id, slot, email, updated_at)"
                " SELECT r.id, s, 'g' || r.id || '-' || s || '@example.test', %s"
                " FROM registry_registrant r, generate_series(1, %s) s",
                [now, addresses],
            )
        centre = User.objects.create_user(username="bench-centre", role=Role.CENTRE)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return centre


def confirm_most(broadcast: Any) -> None:
    """~60% of registrants confirmed over the first hour: Receipts and counters, consistently.

    The broadcast is made to have been sent 65 minutes ago, so the page is measured as staff see
    it an hour after a city-wide broadcast (every receipt in the past, as real ones are)."""
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    broadcast.send_requested_at = timezone.now() - timedelta(minutes=65)
    broadcast.save(update_fields=["send_requested_at"])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO receipts_receipt (broadcast_id, registrant_id, delivery_id, confirmed_at)"
            " SELECT %s, r.registrant_id, MIN(r.delivery_id),"
            " %s + (r.registrant_id %% 3600) * interval '1 second'"
            " FROM broadcasts_recipient r WHERE r.broadcast_id = %s AND r.registrant_id %% 10 < %s"
            " GROUP BY r.registrant_id",
            [broadcast.pk, broadcast.send_requested_at, broadcast.pk, CONFIRMED_TENTHS],
        )
        cursor.execute(
            "UPDATE broadcasts_audiencegroup g SET confirmed = c.n FROM ("
            " SELECT r.group_id, COUNT(DISTINCT r.registrant_id) AS n FROM broadcasts_recipient r"
            " JOIN receipts_receipt x"
            " ON x.broadcast_id = r.broadcast_id AND x.registrant_id = r.registrant_id"
            " WHERE r.broadcast_id = %s GROUP BY r.group_id) c WHERE g.id = c.group_id",
            [broadcast.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def in_process(client: Any, url: str, iterations: int) -> dict[str, float]:
    timings = []
    for _ in range(iterations):
        started = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    timings.sort()
    return {
        "p50_ms": timings[len(timings) // 2],
        "p99_ms": timings[min(len(timings) - 1, int(len(timings) * 0.99))],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.statistics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registrants", type=int, default=500_000)
    parser.add_argument("--addresses", type=int, default=2, choices=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=200, help="in-process GETs per URL per run")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per URL per run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)

    wrk = ensure_wrk()
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mimamori-bench-")))
        database_url = stack.enter_context(common.throwaway_postgres(tag="stats"))
        common.django_for(database_url, workdir, SECRET_KEY=SECRET, LOG_LEVEL="WARNING")
        from django.conf import settings
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext
        from django.utils import timezone

        from bench.confirmations import fanned_out_broadcast
        from mimamori.broadcasts.models import Broadcast

        started = time.monotonic()
        centre = populate(args.registrants, args.addresses)
        print(
            f"{args.registrants} registrants × {args.addresses} in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        started = time.monotonic()
        broadcast = fanned_out_broadcast(centre, "統計ベンチ")
        Broadcast.objects.filter(pk=broadcast.pk).update(
            send_requested_at=timezone.now() - timedelta(hours=2)
        )
        broadcast.refresh_from_db()
        confirm_most(broadcast)
        print(
            f"{broadcast.message_count} deliveries, {broadcast.registrant_count} registrants,"
            f" fanned out and ~60% confirmed in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        client = Client(HTTP_HOST="127.0.0.1")
        client.force_login(centre)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        urls = {
            "page": f"/console/broadcasts/{broadcast.pk}/receipts/",
            "json": f"/console/broadcasts/{broadcast.pk}/receipts/data/",
            "healthz": "/healthz",
        }
        queries = {}
        for name, url in urls.items():
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200, url
            queries[name] = len(captured)
        connection.close()
        port = stack.enter_context(server(database_url, workdir, workers=args.workers, threads=args.threads))
        runs = []
        for run in range(args.runs):
            result: dict[str, Any] = {"in_process": {}, "wrk": {}}
            for name, url in urls.items():
                result["in_process"][name] = in_process(client, url, args.iterations)
                result["wrk"][name] = wrk_fixed(
                    wrk,
                    f"http://127.0.0.1:{port}{url}",
                    threads=2,
                    connections=args.connections,
                    seconds=args.seconds,
                    extra=["-H", f"Cookie: {cookie}"],
                )
            runs.append(result)
            print(
                f"run {run + 1}: page p99 {result['in_process']['page']['p99_ms']:.1f} ms in-process,"
                f" {result['wrk']['page']['p99_ms']:.1f} ms through gunicorn",
                flush=True,
            )
        connection.close()

    def med(where: str, name: str, key: str) -> float:
        return common.median([r[where][name][key] for r in runs])

    rows = []
    summary: dict[str, Any] = {"queries": queries}
    for name, url in urls.items():
        entry = {
            "in_process_p50_ms": med("in_process", name, "p50_ms"),
            "in_process_p99_ms": med("in_process", name, "p99_ms"),
            "wrk_rps": med("wrk", name, "rps"),
            "wrk_p50_ms": med("wrk", name, "p50_ms"),
            "wrk_p99_ms": med("wrk", name, "p99_ms"),
            "wrk_errors": sum(r["wrk"][name]["non_2xx_3xx"] + r["wrk"][name]["socket_errors"] for r in runs),
        }
        summary[name] = entry
        rows.append(
            [
                f"GET {url}",
                queries[name],
                f"{entry['in_process_p50_ms']:.1f}",
                f"{entry['in_process_p99_ms']:.1f}",
                f"{entry['wrk_rps']:.0f}",
                f"{entry['wrk_p50_ms']:.1f}",
                f"{entry['wrk_p99_ms']:.1f}",
                entry["wrk_errors"],
            ]
        )
    summary["ratio_page_to_healthz_rps"] = summary["page"]["wrk_rps"] / summary["healthz"]["wrk_rps"]
    summary["ratio_json_to_healthz_rps"] = summary["json"]["wrk_rps"] / summary["healthz"]["wrk_rps"]
    print()
    print(
        f"Statistics page: {broadcast.message_count} deliveries, {broadcast.registrant_count} registrants,"
        f" {SCHOOLS * GRADES * CLASSES} classes; medians of {args.runs} runs"
        f" (in-process ×{args.iterations};"
        f" gunicorn {args.workers}w×{args.threads}t, wrk -c{args.connections})"
    )
    print(
        common.table(
            ["what", "SQL", "in-proc p50", "in-proc p99", "wrk req/s", "wrk p50", "wrk p99", "errors"], rows
        )
    )
    print(
        f"ratio to /healthz req/s: page {summary['ratio_page_to_healthz_rps']:.3f},"
        f" json {summary['ratio_json_to_healthz_rps']:.3f}"
    )
    path = common.write_results(
        "statistics",
        {
            "args": vars(args),
            "deliveries": broadcast.message_count,
            "registrants": broadcast.registrant_count,
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"wrote {path.relative_to(common.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

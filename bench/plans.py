"""Query plans of the fan-out on a roster-imported audience (issue 10), PostgreSQL.

    uv run python -m bench.plans                      # 100,000 registrants in 10 rosters
    uv run python -m bench.plans --registrants 10000

Registrants are imported with `mimamori import-roster` into a throwaway database, as in
bench/users.py. Then, for two states of the registry tables' planner statistics, the bench
prints `EXPLAIN (ANALYZE, BUFFERS)` of the statement a fan-out slice reads its addresses with
(the audience past the last address written, merged by address, in address order) and times
a whole fan-out (every slice, in this process, no mail sent):

- **as analyzed mid-import**: what autovacuum leaves when it analyzes the tables while the
  import's transaction is still open, so that the new rows are invisible to it: a table of
  no rows (pg_class.reltuples 0, no column statistics). Set here directly in the catalog, so
  that the state is the same on every run; on a live system it happens whenever autovacuum's
  minute falls inside the first import.
- **analyzed**: after ANALYZE, as autovacuum leaves them a minute later, and as the import
  and the fan-out's own check now leave them at once.

The import's own ANALYZE has reset the change counters the fan-out's check reads, so the
fan-out timed in the first state runs on those statistics as every fan-out did before.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, users

TABLES = ("registry_address", "registry_registrant")


def statistics_as_analyzed_mid_import() -> None:
    """The catalog state of an ANALYZE that saw none of the rows (they were not committed)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
            cursor.execute("UPDATE pg_class SET reltuples = 0, relpages = 0 WHERE relname = %s", [table])
            cursor.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", [table])


def analyzed() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {', '.join(TABLES)}")
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def new_broadcast(subject: str) -> Any:
    from mimamori.accounts.models import User
    from mimamori.broadcasts import sending
    from mimamori.broadcasts.models import Broadcast, BroadcastStatus
    from mimamori.broadcasts.targeting import resolve_scope

    centre = User.objects.get(username="bench-centre")
    broadcast = sending.compose(
        centre,
        subject=subject,
        body="本文",
        scope=resolve_scope(centre, municipality_codes=["bench"]),
        request_confirmation=True,
    )
    # Sending without queueing the fan-out task: this process writes the slices itself.
    Broadcast.objects.filter(pk=broadcast.pk).update(status=BroadcastStatus.SENDING)
    broadcast.refresh_from_db()
    return broadcast


def explain_slice(broadcast: Any, after: str, addresses: int) -> tuple[str, float]:
    from django.db import connection

    from mimamori.broadcasts import fanout

    sql, params = fanout._audience_sql(broadcast)
    statement = (
        "SELECT audience.address_key, MIN(audience.email), MIN(audience.sender_school)"  # noqa: S608
        f" FROM ({sql}) audience WHERE audience.address_key > %s"
        f" GROUP BY audience.address_key ORDER BY audience.address_key LIMIT {int(addresses)}"
    )
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, (*params, after))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    took = float(plan.rsplit("Execution Time: ", 1)[1].split()[0])
    return plan, took


def explain_head(broadcast: Any) -> tuple[str, float]:
    """The head of a fan-out (chunk 0: each school's first addresses in turn, fanout.head_sql)."""
    from django.db import connection

    from mimamori.broadcasts import fanout

    sql, params = fanout.head_sql(broadcast, fanout.CHUNK_SIZE)
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return plan, float(plan.rsplit("Execution Time: ", 1)[1].split()[0])


def time_fan_out(broadcast: Any) -> list[float]:
    """Seconds per slice, the first (with the fan-out's statistics check) included."""
    from mimamori.broadcasts import fanout

    slices = []
    while True:
        started = time.monotonic()
        written = fanout.fan_out(broadcast.pk)
        slices.append(time.monotonic() - started)
        if not written:
            return slices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--registrants", type=int, default=100_000)
    parser.add_argument("--schools", type=int, default=0, help="default: rosters of 10,000")
    parser.add_argument("--admin-url", default=common.ADMIN_URL)
    args = parser.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="mimamori-plans-"))
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(common.throwaway_postgres(args.admin_url, tag="plans"))
        common.django_for(url, data_dir)
        installation = users.Installation(url, data_dir, "smtp://127.0.0.1:9")
        installation.command(
            "createstaff",
            "bench-centre",
            "--role=centre",
            "--password-stdin",
            stdin=f"{users.PASSWORD}\n".encode(),
        )
        from mimamori.registry.models import Municipality, School

        city = Municipality.objects.create(code="bench", name="ベンチ市", mail_domain="mail.bench.example.jp")
        left = args.registrants
        schools = args.schools or -(-args.registrants // users.SCHOOL_SIZE)
        size = -(-args.registrants // schools)
        for n in range(schools):
            school = School.objects.create(
                municipality=city, name=f"第{n + 1}小学校", sender_local_part=f"s{n + 1}"
            )
            imported = installation.import_roster(school.pk, min(left, size))
            left -= imported.rows
            print(f"imported {imported.rows} rows in {imported.seconds:.1f} s", flush=True)
        results = {}
        for state, prepare in (
            ("as analyzed mid-import", statistics_as_analyzed_mid_import),
            ("analyzed", analyzed),
        ):
            prepare()
            broadcast = new_broadcast(state)
            # A slice in the middle of the audience: the first 10,000 addresses are written.
            middle = sorted(broadcast_addresses(broadcast))[min(10_000, args.registrants // 2)]
            plan, took = explain_slice(broadcast, middle, 10_000)
            print(f"\n=== statistics {state}: a slice of 10,000 addresses, {took:.1f} ms\n{plan}")
            head_plan, head_took = explain_head(broadcast)
            print(f"\n=== statistics {state}: the head, {head_took:.1f} ms\n{head_plan}")
            if state != "analyzed":
                prepare()  # the EXPLAIN's planning read them; set them again for the fan-out
            before = last_analyzed()
            slices = time_fan_out(broadcast)
            if last_analyzed() != before:
                print("(the fan-out's check analyzed the tables first)")
            results[state] = (took, slices)
            print(
                f"fan-out: {len(slices) - 1} slices, {sum(slices):.2f} s in all, first {slices[0]:.2f} s"
                f" (slices: {', '.join(f'{s:.2f}' for s in slices)})"
            )
        print()
        for state, (took, slices) in results.items():
            print(f"{state:>24}: slice read {took:8.1f} ms; whole fan-out {sum(slices):6.2f} s")
    return 0


def last_analyzed() -> list[Any]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, last_analyze FROM pg_stat_user_tables WHERE relname = ANY(%s) ORDER BY 1",
            [list(TABLES)],
        )
        return cursor.fetchall()


def broadcast_addresses(broadcast: Any) -> list[str]:
    from mimamori.broadcasts.targeting import audience

    return [email.lower() for email in audience(broadcast).values_list("email", flat=True)]


if __name__ == "__main__":
    raise SystemExit(main())

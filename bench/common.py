"""Small helpers shared by the benchmarks: throwaway databases, Django set-up, tools, results.

Import this before Django is configured: ``django_for(url, data_dir)`` points this process at
the database the bench made (settings read DATABASE_URL once, at set-up), migrates it and
returns. Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# The benches run on PostgreSQL, which refuses to start without SECRET_KEY (mimamori/settings.py);
# this process and the mimamori processes it starts share this one unless the caller set another.
os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-never-used-in-production")
ADMIN_URL = os.environ.get("BENCH_ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def throwaway_postgres(admin_url: str = ADMIN_URL, tag: str = "") -> Iterator[str]:
    """CREATE DATABASE mimamori_bench_<pid>[_tag] on the server of ``admin_url``; drop it afterwards."""
    import psycopg

    name = f"mimamori_bench_{os.getpid()}{'_' + tag if tag else ''}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def database(embedded: bool, data_dir: Path, admin_url: str = ADMIN_URL) -> Iterator[str]:
    """A throwaway database for one bench: SQLite in ``data_dir`` (embedded mode) or PostgreSQL."""
    if embedded:
        yield f"sqlite:///{data_dir / 'mimamori.sqlite3'}"
    else:
        with throwaway_postgres(admin_url) as url:
            yield url


def django_for(database_url: str, data_dir: Path, **environment: str) -> None:
    """Configure Django in this process for ``database_url`` and migrate it (quietly)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["MIMAMORI_DATA_DIR"] = str(data_dir)
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mimamori.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def ensure_postfix_tools() -> None:
    """Install Debian's postfix (for smtp-sink / smtp-source) if missing; never start postfix."""
    if Path("/usr/sbin/smtp-sink").exists() and Path("/usr/sbin/smtp-source").exists():
        return
    environment = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(
        ["debconf-set-selections"],
        input=b"postfix postfix/main_mailer_type select No configuration\n",
        check=True,
    )
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "postfix"],
        env=environment,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {"nproc": os.cpu_count(), "cpu": model, "memory": memory}


def write_results(name: str, data: dict[str, Any], path: Path | None = None) -> Path:
    """``path``, by default bench/results/<name>-<UTC timestamp>.json (gitignored)."""
    if path is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=str) + "\n")
    return path


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def which(tool: str) -> str:
    found = shutil.which(tool) or (f"/usr/sbin/{tool}" if Path(f"/usr/sbin/{tool}").exists() else None)
    if not found:
        raise FileNotFoundError(tool)
    return found


def family(pid: int) -> list[int]:
    """pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def peak_rss_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a process and its descendants, summed."""
    total = 0
    for member in family(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants so far."""
    return cpu_of(family(pid))


def cpu_of(pids: list[int]) -> float:
    total = 0
    for member in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> dict[int, float]:
    """CPU time so far of every PostgreSQL process on this machine, by pid (the server is local)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = cpu_of([int(entry.name)])
    return found

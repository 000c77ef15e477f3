"""`mimamori run`: the whole system on one machine (embedded mode).

Migrates, optionally loads the demo data, starts the development mailbox (when EMAIL_URL is
unset), the background workers as child processes (by default two per CPU serving every
queue, and one more serving only the urgent queue, so an alert never waits behind a large
broadcast; docs/operations.md says why so many), and the web server (waitress) in this one.
Static files need no collectstatic: WhiteNoise serves them straight from the app folders.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.wsgi import get_wsgi_application
from waitress.server import create_server

from mimamori import env

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class WorkerSupervisor:
    """Keeps one `mimamori worker` child alive until stop(), restarting it if it dies."""

    def __init__(self, environment: dict[str, str], interval: float, *arguments: str) -> None:
        self.command = [
            sys.executable,
            "-m",
            "mimamori",
            "worker",
            f"--interval={interval}",
            f"--parent-pid={os.getpid()}",
            *arguments,
        ]
        self.environment = environment
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        # Held while deciding to start a child, so stop() never misses one started meanwhile.
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    def request_stop(self) -> None:
        """Ask the worker to stop (it finishes the task in hand) without waiting for it."""
        with self.lock:
            self.stopping.set()
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()

    def start(self) -> None:
        self.thread.start()
        self.started.wait(timeout=10)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _supervise(self) -> None:
        delay = 1.0
        while True:
            with self.lock:
                if self.stopping.is_set():
                    return
                # Its own process group: a Ctrl-C in the terminal reaches only `run`, which then
                # stops the worker in order instead of interrupting it half-way through start-up.
                self.process = subprocess.Popen(self.command, env=self.environment, process_group=0)
            self.started.set()
            began = time.monotonic()
            code = self.process.wait()
            if self.stopping.is_set():
                return
            # A worker that keeps dying at once (bad database URL, say) is retried ever more slowly.
            delay = 1.0 if time.monotonic() - began > 60 else min(delay * 2, 30.0)
            log.warning("background worker exited with status %s; restarting in %.0f s", code, delay)
            if self.stopping.wait(delay):
                return

    def stop(self, timeout: float = 15) -> None:
        # SIGTERM lets the worker finish the task in hand; the row stays the truth if it can't.
        self.request_stop()
        process = self.process
        if process is not None:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.thread.join(timeout=5)


def default_workers() -> int:
    # A worker's SMTP connections spend most of their time waiting for the relay's replies, so
    # one worker per CPU leaves CPUs idle (docs/performance.md): two per CPU.
    return 2 * (os.cpu_count() or 1)


def _stop_on_signal(signum: int, frame: FrameType | None) -> None:
    # Only the first signal interrupts; a second Ctrl-C must not cut the clean-up short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # waitress's loop treats SystemExit as "close and return".
    raise SystemExit(0)


class Command(BaseCommand):
    help = (
        "Migrate and run the whole system on this machine: web server, background worker and, "
        "without EMAIL_URL, the development mailbox. --demo first loads demo data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=8000, help="Port to listen on (default 8000).")
        parser.add_argument(
            "--demo",
            action="store_true",
            help="Load the demo data (once) and print its logins. Only with the development mailbox.",
        )
        parser.add_argument("--threads", type=int, default=8, help="Web server threads (default 8).")
        parser.add_argument(
            "--workers",
            type=int,
            default=default_workers(),
            help="Background workers for every queue (default two per CPU, %(default)s here), "
            "besides the one for urgent broadcasts.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        base_url = self._base_url(host, port)
        signal.signal(signal.SIGTERM, _stop_on_signal)
        signal.signal(signal.SIGINT, _stop_on_signal)

        call_command("migrate", interactive=False, verbosity=0)
        summary = None
        if options["demo"]:
            self._refuse_real_relay()
            from mimamori.quakes.demo import configure_demo
            from mimamori.registry.demo import load_demo

            summary = load_demo()
            configure_demo()

        mailbox = None
        workers: list[WorkerSupervisor] = []
        server = None
        try:
            if settings.DEVMAIL_ENABLED:
                mailbox = self._start_mailbox()
            server = self._create_server(host, port, options["threads"])
            environment = dict(os.environ, BASE_URL=base_url)
            # The urgent worker does nothing else (B2); the first general one runs the sweep for all.
            workers = [
                WorkerSupervisor(environment, 0.5, *(() if n == 0 else ("--no-sweep",)))
                for n in range(max(1, options["workers"]))
            ]
            workers.append(WorkerSupervisor(environment, 0.2, "--queues=urgent", "--no-sweep"))
            # Gate mails have theirs too (B6): a large broadcast never holds a child's 登校 mail.
            workers.append(WorkerSupervisor(environment, 0.2, "--queues=gates", "--no-sweep"))
            for worker in workers:
                worker.start()
            self._announce(base_url, workers, summary)
            server.run()
        finally:
            if server is not None:
                server.close()
            for worker in workers:
                worker.request_stop()  # both wind down at once
            for worker in workers:
                worker.stop()
            if mailbox is not None:
                mailbox.stop()
            self.stdout.write("mimamori stopped.")

    def _base_url(self, host: str, port: int) -> str:
        if env.string("BASE_URL"):
            return settings.BASE_URL
        shown = "127.0.0.1" if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
        shown = f"[{shown}]" if ":" in shown else shown
        # Mails carry links under BASE_URL: without one configured, point them at this server.
        settings.BASE_URL = f"http://{shown}:{port}"
        return settings.BASE_URL

    def _refuse_real_relay(self) -> None:
        # Demo addresses are made up at real carrier domains (see registry/demo.py).
        if not settings.DEVMAIL_ENABLED and settings.EMAIL_HOST not in LOOPBACK:
            raise CommandError(
                "--demo registers made-up addresses at real mail domains, so it runs only with the "
                "development mailbox (EMAIL_URL unset) or a mail sink on this machine."
            )

    def _start_mailbox(self) -> Any:
        from mimamori.mail.devmailbox import start_server

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every session
        try:
            return start_server(settings.DEVMAIL_DIR, port=settings.DEVMAIL_PORT)
        except Exception as error:
            raise CommandError(
                f"Could not start the development mailbox on 127.0.0.1:{settings.DEVMAIL_PORT} ({error}). "
                "Set MIMAMORI_DEVMAIL_PORT to a free port, or EMAIL_URL to a real relay."
            ) from error

    def _create_server(self, host: str, port: int, threads: int) -> Any:
        try:
            return create_server(get_wsgi_application(), host=host, port=port, threads=threads)
        except OSError as error:
            raise CommandError(f"Could not listen on {host}:{port} ({error}). Try --port.") from error

    def _announce(self, base_url: str, workers: list[WorkerSupervisor], summary: Any) -> None:
        lines = [
            "",
            "mimamori is running (embedded mode).",
            f"  Site:                {base_url}/",
            f"  Guardian site:       {base_url}/portal/",
            f"  Staff console:       {base_url}/console/",
        ]
        if settings.DEVMAIL_ENABLED:
            lines.append(
                f"  Development mailbox: {base_url}/console/mailbox/ "
                f"(SMTP on 127.0.0.1:{settings.DEVMAIL_PORT})"
            )
        else:
            lines.append(f"  Outgoing mail:       {settings.EMAIL_HOST}:{settings.EMAIL_PORT}")
        general = ", ".join(str(w.pid) for w in workers[:-2])
        lines.append(f"  Background workers:  pids {general} (all queues)")
        lines.append(f"  Urgent worker:       pid {workers[-2].pid} (urgent broadcasts only)")
        lines.append(f"  Gate worker:         pid {workers[-1].pid} (登下校 mails only)")
        if summary is not None:
            lines += ["", *summary.lines()]
        lines += ["", "Press Ctrl-C to stop.", ""]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

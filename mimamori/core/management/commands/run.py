"""`mimamori run`: the whole system on one machine (embedded mode).

Migrates, optionally loads the demo data, starts the development mailbox (when EMAIL_URL is
unset), the background workers as child processes (by default two per CPU serving every
queue, and one more serving only the urgent queue, so an alert never waits behind a large
broadcast; docs/operations.md says why so many), and the web server (waitress) in this one.
Static files need no collectstatic: WhiteNoise serves them straight from the app folders.

Nothing is served that cannot work: the database (and the broker) must answer first
(core/startup.py), and the port is opened only once every worker has reported that it started.
A worker that exits before that, or within a few seconds after, stops `run` with its reason and
status; one that dies later is restarted. Each port has a data directory of its own (./var for
8000, ./var/port-N for another port, unless MIMAMORI_DATA_DIR says where), and the development
mailbox listens on the port + 25 (a free one if that is taken), so demos run side by side.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.wsgi import get_wsgi_application
from waitress.server import create_server

from mimamori import env
from mimamori.core import startup

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PORT = 8000
# The development mailbox's SMTP port is the web port + 25 (8000 → 8025), unless it is taken.
MAILBOX_PORT_OFFSET = 25
# A worker that stops this soon after reporting ready did not really start.
STARTUP_GRACE_SECONDS = 5.0
# How long workers may take to report, beyond their own wait for the database and broker.
READY_MARGIN_SECONDS = 60.0


class WorkerSupervisor:
    """Keeps one `mimamori worker` child alive until stop(), restarting it if it dies.

    Each child says on a pipe (--ready-fd) when it has passed its start-up checks, or why it
    could not. The first child failed to start if it exits before that, or within
    STARTUP_GRACE_SECONDS after: it is not restarted, ``failure`` says why, and ``on_failure``
    is called (run then stops everything). Later children are restarted, more and more slowly.
    """

    def __init__(
        self, environment: dict[str, str], interval: float, *arguments: str, on_failure: Callable[[], None]
    ) -> None:
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
        self.on_failure = on_failure
        self.process: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        # Held while deciding to start a child, so stop() never misses one started meanwhile.
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.ready = threading.Event()
        self.failure: startup.Refused | None = None
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
        first = True
        while True:
            report, write_end = os.pipe()
            with self.lock:
                if self.stopping.is_set():
                    os.close(report)
                    os.close(write_end)
                    return
                # Its own process group: a Ctrl-C in the terminal reaches only `run`, which then
                # stops the worker in order instead of interrupting it half-way through start-up.
                self.process = subprocess.Popen(
                    [*self.command, f"--ready-fd={write_end}"],
                    env=self.environment,
                    process_group=0,
                    pass_fds=(write_end,),
                )
            os.close(write_end)
            self.started.set()
            began = time.monotonic()
            said = startup.read_report(report)  # until the child reports, or exits
            ready_at = time.monotonic() if said == startup.READY else None
            if ready_at is not None:
                self.ready.set()
            code = self.process.wait()
            if self.stopping.is_set():
                return
            reason = "" if said == startup.READY else said
            if first and (ready_at is None or time.monotonic() - ready_at < STARTUP_GRACE_SECONDS):
                self.failure = self._failure(code, reason, ready_at)
                self.on_failure()
                return
            first = False
            # A worker that keeps dying at once (the database away, say) is retried ever more slowly.
            delay = 1.0 if time.monotonic() - began > 60 else min(delay * 2, 30.0)
            log.warning(
                "background worker exited with status %s%s; restarting in %.0f s",
                code,
                f" ({reason})" if reason else "",
                delay,
            )
            if self.stopping.wait(delay):
                return

    def _failure(self, code: int, reason: str, ready_at: float | None) -> startup.Refused:
        # The worker's own status when it refused (3: a service away, 4: configuration), else 1.
        status = code if code > 0 else 1
        if reason:
            return startup.Refused(f"a background worker could not start: {reason}", status)
        when = "while starting" if ready_at is None else "just after it started"
        return startup.Refused(
            f"a background worker stopped {when} (exit status {code}); its output is above.", status
        )

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
        if self.thread.ident is not None:  # started (run may stop before it starts them all)
            self.thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
        self._own_data_directory(port)
        signal.signal(signal.SIGTERM, _stop_on_signal)
        signal.signal(signal.SIGINT, _stop_on_signal)
        try:
            startup.wait_for_services()
        except startup.Refused as refused:
            startup.exit_refused(refused)
        base_url = self._base_url(host, port)

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
            try:
                if settings.DEVMAIL_ENABLED:
                    mailbox = self._start_mailbox(port)
                environment = dict(
                    os.environ, BASE_URL=base_url, MIMAMORI_DEVMAIL_PORT=str(settings.DEVMAIL_PORT)
                )

                def stop_run() -> None:
                    # A worker failed to start: stop as Ctrl-C would; the failure is reported below.
                    os.kill(os.getpid(), signal.SIGTERM)

                def supervisor(interval: float, *arguments: str) -> WorkerSupervisor:
                    return WorkerSupervisor(environment, interval, *arguments, on_failure=stop_run)

                # The urgent worker does nothing else (B2); the first general one runs the sweep for all.
                general = max(1, options["workers"])
                workers = [supervisor(0.5, *(() if n == 0 else ("--no-sweep",))) for n in range(general)]
                workers.append(supervisor(0.2, "--queues=urgent", "--no-sweep"))
                # Gate mails have theirs too (B6): a large broadcast never holds a child's 登校 mail.
                workers.append(supervisor(0.2, "--queues=gates", "--no-sweep"))
                for worker in workers:
                    worker.start()
                self._wait_until_ready(workers)
                # Only now the port opens: a site whose workers cannot start is never served.
                server = self._create_server(host, port, options["threads"])
                self._announce(base_url, workers, summary)
                server.run()  # returns on SIGTERM or Ctrl-C (waitress closes on SystemExit)
            except SystemExit:
                pass  # a signal while starting, or a worker that failed to start (reported below)
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
        failure = next((worker.failure for worker in workers if worker.failure is not None), None)
        if failure is not None:
            startup.exit_refused(failure)

    def _own_data_directory(self, port: int) -> None:
        """Each port its own data directory unless MIMAMORI_DATA_DIR is set: ./var for port 8000,
        ./var/port-N for port N. The settings are read when the process starts, so the process
        starts again with the variable set (same pid, same arguments)."""
        if port == DEFAULT_PORT or env.string("MIMAMORI_DATA_DIR") is not None:
            return
        if sys.argv[1:2] != ["run"]:
            return  # called from code (call_command): its settings are its caller's
        directory = settings.DATA_DIR / f"port-{port}"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(  # noqa: S606  (this very command again, argument for argument)
            sys.executable,
            [sys.executable, "-m", "mimamori", *sys.argv[1:]],
            dict(os.environ, MIMAMORI_DATA_DIR=str(directory)),
        )

    def _wait_until_ready(self, workers: list[WorkerSupervisor]) -> None:
        """Until every worker reported ready. One that fails meanwhile stops run by SIGTERM."""
        seconds = settings.MIMAMORI_START_WAIT_SECONDS + READY_MARGIN_SECONDS
        deadline = time.monotonic() + seconds
        for worker in workers:
            if not worker.ready.wait(max(0.0, deadline - time.monotonic())):
                raise CommandError(
                    f"The background workers did not report that they started within {seconds:.0f} s."
                )

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

    def _start_mailbox(self, port: int) -> Any:
        """The development mailbox on MIMAMORI_DEVMAIL_PORT if set, else on the web port + 25, or
        on a free port when that is taken (a second demo on this machine). Settings and workers
        are pointed at the port chosen."""
        from mimamori.mail.devmailbox import start_server

        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every session
        if env.string("MIMAMORI_DEVMAIL_PORT") is not None:
            candidates = [settings.DEVMAIL_PORT]
        else:
            following = port + MAILBOX_PORT_OFFSET
            candidates = [following, 0] if 0 < following < 65536 else [0]
        error: Exception | None = None
        for candidate in candidates:
            chosen = candidate or _free_port()
            try:
                mailbox = start_server(settings.DEVMAIL_DIR, port=chosen)
            except Exception as problem:  # aiosmtpd re-raises whatever its thread met
                error = problem
                continue
            settings.DEVMAIL_PORT = settings.EMAIL_PORT = chosen
            return mailbox
        raise CommandError(
            f"Could not start the development mailbox on 127.0.0.1:{settings.DEVMAIL_PORT} ({error}). "
            "Set MIMAMORI_DEVMAIL_PORT to a free port, or EMAIL_URL to a real relay."
        )

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
            f"  Data directory:      {settings.DATA_DIR}",
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

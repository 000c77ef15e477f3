"""The relay of deploy/postfix/, run by Debian's Postfix, in front of mimamori (issue 12).

The module starts one private Postfix instance as root, with its own configuration directory,
queue, log and port in a temporary directory (`postfix -c DIR start`), made from the files of
deploy/postfix/ the way docs/operations.md installs them (main.cf as the whole main.cf,
master.cf after Debian's stock one, the transport table). Only what must differ on a test
machine is changed: ports and next hops (each carrier's transport delivers to an SMTP sink of
its own on loopback, everything else to one more, postmaster's mail included), paths, the
pipe's user, the chroot column, and short queue timings. Nothing leaves 127.0.0.1, and the
machine's own Postfix, if any, is not touched; the instance is stopped and removed whatever
happens. mimamori sends to it over SMTP (EMAIL_HOST, EMAIL_PORT) as to a production relay.

The bounce test needs PostgreSQL: the pipe runs `mimamori bounce` as a process of its own,
as another user, and it must see this run's test database, which on SQLite lives in memory.
"""

from __future__ import annotations

import asyncio
import grp
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings as django_settings

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import OPEN_STATUSES, Broadcast, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.mail.models import CarrierProfile
from mimamori.registry.models import Address, AddressFailure, AddressStatus, Registrant, School
from tests.cast import make_municipality, make_school, make_staff
from tests.mailsink import Sink, free_port
from tests.tasks import run_until_quiet
from tests.test_engines import _database_url

pytestmark = [pytest.mark.postfix, pytest.mark.serial]

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "postfix"
STOCK_MASTER_CF = Path("/usr/share/postfix/master.cf.dist")  # Debian's master.cf as installed
POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin")
# The pipe's user: unprivileged, as in production (pipe(8) refuses root and the mail owner).
PIPE_USER, PIPE_GROUP = "nobody", "nogroup"
# One of deploy/postfix/main.cf's relay_domains, so its bounce routing is used unchanged.
MAIL_DOMAIN = "mail.mimamori-iwamizawa.jp"
# The transports of deploy/postfix/master.cf, and Postfix's default one (smtp).
TRANSPORTS = (
    *("mimamori-docomo", "mimamori-au", "mimamori-softbank", "mimamori-ymobile"),
    *("mimamori-gmail", "mimamori-yahoo", "smtp"),
)

if POSTFIX is None:
    pytest.skip(
        "Debian's postfix is not installed (`make install-system` installs it)", allow_module_level=True
    )


class CarrierSink(Sink):
    """The test sink as one carrier's gateway, on a port of its own. It watches its sessions
    (connections) and transactions (MAIL to the end of the message), and takes ``delay``
    seconds over each message, as a real gateway takes time, so that deliveries overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.open: dict[int, int] = {}  # messages so far in each open session
        self.in_transaction: set[int] = set()
        self.reset()

    def reset(self) -> None:
        """Forget what was received; sessions still open keep their counts."""
        with self.lock:
            self.messages.clear()
            self.refusals.clear()
            self.attempts.clear()
            self.envelope_senders.clear()
            self.delay = 0.0
            self.closed_sessions: list[int] = []  # messages in each session closed since
            self.most_sessions = len(self.open)
            self.most_transactions = len(self.in_transaction)

    def opened(self, server: SMTP) -> None:
        with self.lock:
            self.open[id(server)] = 0
            self.most_sessions = max(self.most_sessions, len(self.open))

    def closed(self, server: SMTP) -> None:
        with self.lock:
            self.in_transaction.discard(id(server))
            if id(server) in self.open:
                self.closed_sessions.append(self.open.pop(id(server)))

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.in_transaction.add(id(server))
            self.most_transactions = max(self.most_transactions, len(self.in_transaction))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        reply = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.open[id(server)] += 1
            self.in_transaction.discard(id(server))
        return reply

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.in_transaction.discard(id(server))
        return "250 OK"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.closed(server)  # the client has ended the session; only the socket is left to close
        return "221 Bye"

    def sessions(self) -> list[int]:
        """Messages in each session that carried any, since the last reset."""
        with self.lock:
            return [n for n in [*self.closed_sessions, *self.open.values()] if n]

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class _Server(SMTP):
    """aiosmtpd's server, telling the sink when a connection opens and closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.event_handler.opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.event_handler.closed(self)
        super().connection_lost(error)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


def _run(*command: str | Path) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


@dataclass
class Relay:
    """A private Postfix instance, and the sinks standing in for the carriers behind it."""

    directory: Path
    port: int
    sinks: dict[str, CarrierSink]
    controllers: list[Controller] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.directory / "etc"

    @property
    def data_directory(self) -> Path:
        """MIMAMORI_DATA_DIR of the pipe's `mimamori bounce`, the pipe's user's own."""
        return self.directory / "mimamori"

    @property
    def env_file(self) -> Path:
        """The environment file of the pipe's `mimamori bounce` (deploy/postfix/mimamori-bounce)."""
        return self.directory / "mimamori.env"

    def postconf(self, *arguments: str) -> str:
        return _run("postconf", "-c", self.config, *arguments)

    def value(self, name: str) -> str:
        return self.postconf("-h", name).strip()

    def log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def build(self, mimamori: Path) -> None:
        self.config.mkdir()
        (self.directory / "spool").mkdir()  # Postfix makes its subdirectories and data_directory
        # main.cf is deploy/postfix/main.cf; postconf -e changes lines below.
        shutil.copy(DEPLOY / "main.cf", self.config / "main.cf")
        master = STOCK_MASTER_CF.read_text() + "\n" + (DEPLOY / "master.cf").read_text()
        pipe_user = f"user={PIPE_USER}:{PIPE_GROUP} argv={DEPLOY / 'mimamori-bounce'} "
        master, replaced = re.subn(r"user=mimamori argv=\S+ ", pipe_user, master)
        assert replaced == 1, "deploy/postfix/master.cf no longer runs the pipe as user=mimamori"
        (self.config / "master.cf").write_text(master)
        # Port 25 is the machine's: mimamori's SMTP server gets a free loopback port instead.
        self.postconf("-MX", "smtp/inet")
        self.postconf("-M", f"{self.port}/inet={self.port} inet n - n - - smtpd")
        # Debian's stock services run chrooted in its queue directory, which holds copies of
        # /etc files for them; this instance's queue directory has none.
        self.postconf("-F", "*/*/chroot=n")

        # The transport table with each carrier's next hop on its sink; the table's domains and
        # transports as deploy/postfix/transport has them.
        table = []
        for line in (DEPLOY / "transport").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                domain, route = line.split()
                transport, _, nexthop = route.partition(":")
                assert nexthop == "", f"{domain}: expected the carrier's own MX, not {nexthop}"
                table.append(f"{domain} {transport}:[127.0.0.1]:{self.sinks[transport].port}")
        (self.config / "mimamori_transport").write_text("\n".join(table) + "\n")
        _run("postmap", "-c", self.config, self.config / "mimamori_transport")

        self.data_directory.mkdir()
        os.chown(self.data_directory, pwd.getpwnam(PIPE_USER).pw_uid, grp.getgrnam(PIPE_GROUP).gr_gid)
        self.env_file.touch(mode=0o640)
        os.chown(self.env_file, 0, grp.getgrnam(PIPE_GROUP).gr_gid)
        default_imports = _run("postconf", "-d", "-h", "import_environment").strip()
        default_exports = _run("postconf", "-d", "-h", "export_environment").strip()
        self.postconf(
            "-e",
            f"queue_directory={self.directory / 'spool'}",
            f"data_directory={self.directory / 'lib'}",
            f"maillog_file={self.directory / 'maillog'}",
            f"maillog_file_prefixes={self.directory}",
            "inet_interfaces=loopback-only",
            "inet_protocols=ipv4",
            f"transport_maps=hash:{self.config / 'mimamori_transport'}",
            f"default_transport=smtp:[127.0.0.1]:{self.sinks['smtp'].port}",
            # Postmaster's mail goes to the default sink, not to this machine's mailboxes.
            "mydestination=",
            "alias_maps=",
            "alias_database=",
            # Where the pipe finds its environment file (production: the script's default).
            f"import_environment={default_imports} MIMAMORI_ENV_FILE={self.env_file}",
            f"export_environment={default_exports} MIMAMORI_ENV_FILE",
            # Deferred mail is tried again within seconds, not minutes.
            "queue_run_delay=1s",
            "minimal_backoff_time=1s",
            "maximal_backoff_time=2s",
        )
        self.write_environment(MIMAMORI_BIN=str(mimamori))

    def flush(self) -> None:
        """`postqueue -f`: offer every queued message now, cooling-down ones included."""
        _run("postqueue", "-c", self.config, "-f")

    def write_environment(self, **values: str) -> None:
        lines = [line for line in self.env_file.read_text().splitlines() if line.split("=")[0] not in values]
        self.env_file.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in values.items())]) + "\n")

    def start(self) -> None:
        for sink in self.sinks.values():
            controller = _Controller(sink, hostname="127.0.0.1", port=sink.port)
            controller.start()
            self.controllers.append(controller)
        for command in ("check", "start"):
            done = subprocess.run([POSTFIX or "postfix", "-c", self.config, command], timeout=60)
            assert done.returncode == 0, f"postfix {command} failed:\n{self.log()}"
        wait_for(self._listening, 30, self, "Postfix to listen on its port")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        pid_file = self.directory / "spool" / "pid" / "master.pid"
        try:
            if pid_file.exists():
                master = int(pid_file.read_text().split()[0])
                subprocess.run(
                    [POSTFIX or "postfix", "-c", self.config, "stop"], capture_output=True, timeout=30
                )
                deadline = time.monotonic() + 15
                while Path(f"/proc/{master}").exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
                if Path(f"/proc/{master}").exists():  # the master this test started, and no other
                    os.kill(master, signal.SIGKILL)
        finally:
            for controller in self.controllers:
                controller.stop()
            shutil.rmtree(self.directory, ignore_errors=True)


def wait_for(condition: Callable[[], bool], seconds: float, relay: Relay, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what}\n--- mail log:\n{relay.log()[-6000:]}"
        )
        time.sleep(0.05)


def _runs_as_pipe_user(program: str) -> bool:
    try:
        done = subprocess.run(
            [program, "-c", "import django"],
            user=PIPE_USER,
            group=PIPE_GROUP,
            extra_groups=[],
            capture_output=True,
        )
    except PermissionError:
        return False
    return done.returncode == 0


def mimamori_for_the_pipe(directory: Path) -> Path:
    """A `mimamori` the pipe's user can run: the project's own, when that user can reach its
    interpreter. Otherwise (pyenv's Python under /root, which only root may enter) a virtual
    environment on the system's Python of the same version, seeing the project's installed
    packages: the same code and dependencies, as a deployment under /srv would have them."""
    if _runs_as_pipe_user(sys.executable):
        return Path(sys.executable).parent / "mimamori"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = Path(f"/usr/bin/python{version}")
    assert system.exists(), (
        f"the pipe's user {PIPE_USER} cannot run {sys.executable}, and there is no {system} to run "
        f"mimamori with instead; install the project with a Python that other users can run"
    )
    venv = directory / "venv"
    _run(system, "-m", "venv", "--without-pip", venv)
    site_packages = next((venv / "lib").glob("python*/site-packages"))
    project = sysconfig.get_paths()["purelib"]
    (site_packages / "mimamori-project.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    launcher = venv / "bin" / "mimamori"
    launcher.write_text(f"#!{venv / 'bin' / 'python'}\nfrom mimamori.__main__ import main\n\nmain()\n")
    launcher.chmod(0o755)
    assert _runs_as_pipe_user(str(venv / "bin" / "python")), f"{PIPE_USER} cannot run {venv}"
    return launcher


@pytest.fixture(scope="module")
def postfix() -> Iterator[Relay]:
    """One instance for the module's tests (starting one takes a few seconds)."""
    assert os.geteuid() == 0, "a private Postfix instance is started as root (as `postfix start` is)"
    pwd.getpwnam(PIPE_USER)
    directory = Path(tempfile.mkdtemp(prefix="mimamori-postfix-"))
    directory.chmod(0o755)  # the pipe's user reads the environment file and runs from here
    sinks = {name: CarrierSink() for name in TRANSPORTS}
    relay = Relay(directory, free_port(), sinks)
    try:
        relay.build(mimamori_for_the_pipe(directory))
        relay.start()
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def relay(postfix: Relay, settings: Any) -> Relay:
    """The instance with fresh sinks, and mimamori sending to it."""
    for sink in postfix.sinks.values():
        sink.reset()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", postfix.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    return postfix


_numbers = itertools.count(1)


def enrol_bulk(school: School, slots: list[list[str]]) -> list[Registrant]:
    """One registrant per entry of ``slots`` (its addresses, slot 1 first), in a few statements."""
    tag = f"pf{next(_numbers)}x"
    users = User.objects.bulk_create(
        [User(username=f"{tag}{n:06d}", role="", password="!") for n in range(len(slots))]
    )
    registrants = Registrant.objects.bulk_create(
        [
            Registrant(school=school, account=user, child_name=f"児童{n}", grade=3, class_name="1")
            for n, user in enumerate(users)
        ]
    )
    Address.objects.bulk_create(
        [
            Address(registrant=registrant, slot=slot, email=email)
            for registrant, emails in zip(registrants, slots, strict=True)
            for slot, email in enumerate(emails, start=1)
        ]
    )
    return registrants


def broadcast(school: School) -> Broadcast:
    """A broadcast to the whole school, sent and handed to the relay."""
    staff = make_staff(Role.SCHOOL, school=school)
    composed = sending.compose(
        staff,
        subject="不審者情報",
        body="下校時に注意してください。",
        scope=resolve_scope(staff, school_ids=[school.pk]),
    )
    assert sending.send(composed)
    handed_over(composed)
    composed.refresh_from_db()
    return composed


def handed_over(sent: Broadcast, seconds: float = 120) -> None:
    """Run the delivery tasks until the relay has answered for every mail of ``sent``. A group
    that mimamori paused (the relay slow to answer on a loaded machine) waits out its pause in
    the database, as in production, and is sent when its task is due again."""
    deadline = time.monotonic() + seconds
    while True:
        run_until_quiet()
        waiting = Delivery.objects.filter(broadcast=sent, status__in=OPEN_STATUSES)
        if not waiting.exists():
            return
        troubles = list(CarrierProfile.objects.exclude(last_trouble="").values_list("name", "last_trouble"))
        assert time.monotonic() < deadline, f"{waiting.count()} mails still waiting; trouble: {troubles}"
        time.sleep(0.5)


def a_school() -> School:
    return make_school(make_municipality(mail_domain=MAIL_DOMAIN))


# One address at every domain of deploy/postfix/transport, and one that is in none of them.
ROUTES = {
    "mimamori-au": ["papa@ezweb.ne.jp", "papa@au.com"],
    "mimamori-softbank": ["papa@softbank.ne.jp", "papa@i.softbank.jp"],
    "mimamori-ymobile": ["papa@ymobile.ne.jp"],
    "mimamori-gmail": ["papa@gmail.com"],
    "mimamori-yahoo": ["papa@yahoo.co.jp"],
    "smtp": ["papa@icloud.com"],
}
DOCOMO_MAILS = 1500


@pytest.mark.django_db
def test_each_carrier_gets_its_own_transport_and_docomo_never_more_sessions_or_mails_per_session(
    relay: Relay,
) -> None:
    docomo = relay.sinks["mimamori-docomo"]
    docomo.delay = 0.05  # a gateway's time per message: sessions overlap, a backlog forms
    school = a_school()
    enrol_bulk(school, [[f"g{n:05d}@docomo.ne.jp"] for n in range(DOCOMO_MAILS)])
    enrol_bulk(school, [[address] for addresses in ROUTES.values() for address in addresses])

    sent = broadcast(school)
    assert sending.progress(sent).failed == 0
    assert not Delivery.objects.filter(broadcast=sent).exclude(status=DeliveryStatus.ACCEPTED).exists()

    others = sum(len(addresses) for addresses in ROUTES.values())

    def delivered() -> bool:
        return docomo.count() == DOCOMO_MAILS and sum(relay.sinks[t].count() for t in ROUTES) == others

    wait_for(delivered, 120, relay, f"{DOCOMO_MAILS} docomo mails and {others} others at the sinks")
    for transport, addresses in ROUTES.items():
        assert relay.sinks[transport].copies() == dict.fromkeys(addresses, 1), transport
    assert set(docomo.copies().values()) == {1}

    # The limits the relay runs with, read from its configuration (deploy/postfix/ unchanged).
    concurrency = int(relay.value("mimamori-docomo_destination_concurrency_limit"))
    reuse = relay.postconf("-P", "mimamori-docomo/unix/smtp_connection_reuse_count_limit")
    per_session = int(reuse.split("=")[1]) + 1  # a session is used up to N+1 times
    assert (concurrency, per_session) == (10, 100)

    sessions = docomo.sessions()
    summary = (
        f"docomo: at most {docomo.most_sessions} sessions and {docomo.most_transactions} mails at once; "
        f"{len(sessions)} sessions carried {min(sessions)} to {max(sessions)} mails; mimamori's last "
        f"trouble with the group: {CarrierProfile.objects.get(name='docomo').last_trouble or 'none'}"
    )
    print(summary)
    assert docomo.most_transactions <= concurrency, summary
    assert docomo.most_sessions <= concurrency, summary
    assert max(sessions) <= per_session, summary
    # And the limits were reached: Postfix ran at the limits, not below them by chance.
    assert docomo.most_transactions == concurrency, summary
    assert max(sessions) == per_session, summary


@pytest.mark.skipif(
    django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3",
    reason="the pipe's `mimamori bounce` needs the PostgreSQL test database (DATABASE_URL=postgres://…)",
)
@pytest.mark.django_db(transaction=True)
def test_a_user_unknown_comes_back_through_the_pipe_suppresses_the_address_and_the_next_broadcast_skips_it(
    relay: Relay, settings: Any
) -> None:
    settings.SECRET_KEY = "postfix-test-secret"  # envelope senders are sealed under it
    relay.write_environment(
        SECRET_KEY=settings.SECRET_KEY,
        MIMAMORI_DATA_DIR=str(relay.data_directory),
        # The database is away at first: the bounce must wait in Postfix's queue, not be lost.
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{free_port()}/away",
    )
    docomo, au = relay.sinks["mimamori-docomo"], relay.sinks["mimamori-au"]
    docomo.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 <gone@docomo.ne.jp>: user unknown"]
    school = a_school()
    enrol_bulk(school, [["gone@docomo.ne.jp", "papa@au.com"], ["mama@docomo.ne.jp"]])

    first = broadcast(school)
    # The relay took every mail: mimamori learns of the unknown user only from the bounce.
    assert set(Delivery.objects.filter(broadcast=first).values_list("status", flat=True)) == {
        DeliveryStatus.ACCEPTED
    }
    wait_for(lambda: docomo.count() == 1 and au.count() == 1, 30, relay, "the first broadcast at the sinks")
    assert docomo.attempts["gone@docomo.ne.jp"] == 1

    deferred = re.compile(r"relay=mimamori-bounce, .*status=deferred .*bounce not stored")
    wait_for(lambda: deferred.search(relay.log()) is not None, 30, relay, "the bounce deferred (exit 75)")
    assert Address.objects.get(email="gone@docomo.ne.jp").status == AddressStatus.OK

    relay.write_environment(DATABASE_URL=_database_url())  # the database is back
    # With a second of backoff, the next try can come while pipe(8) still holds the deferred
    # queue file; qmgr then logs "skipped, still being delivered" and sets the message aside
    # for 60 s. An operator who has brought the database back flushes the queue, and so does
    # this test, every few seconds until the bounce is in.
    flushed = 0.0

    def suppressed() -> bool:
        nonlocal flushed
        if time.monotonic() - flushed > 3:
            relay.flush()
            flushed = time.monotonic()
        return Address.objects.get(email="gone@docomo.ne.jp").status == AddressStatus.SUPPRESSED

    wait_for(suppressed, 30, relay, "the bounce recorded by `mimamori bounce`")
    gone = Delivery.objects.get(broadcast=first, email="gone@docomo.ne.jp")
    assert gone.status == DeliveryStatus.FAILED
    assert gone.reply.startswith("bounce:")
    assert "550 5.1.1 <gone@docomo.ne.jp>: user unknown" in gone.reply
    failure = AddressFailure.objects.get()
    assert (failure.source, failure.status, failure.no_such_user) == ("bounce", "5.1.1", True)
    delivered = re.compile(r"relay=mimamori-bounce, .*status=sent \(delivered via mimamori-bounce service")
    wait_for(lambda: delivered.search(relay.log()) is not None, 30, relay, "Postfix to log the delivery")
    assert Address.objects.get(email="mama@docomo.ne.jp").status == AddressStatus.OK

    run_until_quiet()  # the guardian is told, at slot 2, through the relay too
    wait_for(lambda: au.count() == 2, 30, relay, "the notice at the au sink")
    assert "届きません" in str(au.to("papa@au.com")[1]["Subject"])

    second = broadcast(school)
    assert (second.message_count, second.suppressed_count) == (2, 1)
    assert sending.progress(second).suppressed == 1
    assert not Delivery.objects.filter(broadcast=second, email="gone@docomo.ne.jp").exists()
    wait_for(lambda: docomo.count() == 2 and au.count() == 3, 30, relay, "the second broadcast at the sinks")
    assert docomo.attempts["gone@docomo.ne.jp"] == 1  # never offered again
    assert len(re.findall(r"to=<gone@docomo.ne.jp>", relay.log())) == 1

"""deploy/ as installed: the systemd units' own commands run, the site answers, broadcasts arrive.

The unit files are parsed (the [Service] section's ExecStart, Environment, EnvironmentFile and
WorkingDirectory) and their install paths replaced by this checkout's: /srv/mimamori by the
checkout (its .venv), /var/lib/mimamori by a temporary data directory, /etc/mimamori/mimamori.env
by a file written from deploy/mimamori.env.example the way the walkthrough in docs/operations.md
fills it in, and the web server's 127.0.0.1:8000 by a free port. Then the very command lines the
units start are run, each with the environment systemd would give it (PATH, HOME, the unit's
Environment= and then its EnvironmentFile=, NOTIFY_SOCKET for Type=notify), in the unit's
WorkingDirectory, and stopped as systemd stops them (SIGTERM to the main process). What systemd
itself adds (User=, the hardening options) cannot be run here: `systemd-analyze verify` checks
that every option is known and every command exists.

The database is a private one: SQLite in the data directory on SQLite runs, a database of its
own on the PostgreSQL server of PostgreSQL runs. Mail goes to an aiosmtpd sink (EMAIL_URL).
Distributed mode (Celery on RabbitMQ) needs PostgreSQL, so it runs on PostgreSQL runs only.

The walkthrough's commands run through deploy/mimamori-admin (migrate, createstaff, apitoken,
check --deploy); the data is made through the REST API, as another system would. The dedicated
workers (mimamori-queue@urgent, @gates) start first, alone: an urgent broadcast and a gate pass
must arrive through them. Then a general worker (mimamori-worker@1) starts: a normal broadcast
arrives, and a scheduled one, which only the sweep sends. When nginx is installed (Makefile,
install-web), deploy/nginx/mimamori.conf runs in front (its ports, certificate and upstream
replaced) and every request goes through it over TLS: the http redirect, a console login
(CSRF and secure cookies over the proxy), the client's address in the audit log, both 413s.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from mimamori.tasking.queues import QUEUES
from tests.mailsink import Sink, free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
NGINX_SITE = DEPLOY / "nginx" / "mimamori.conf"

# The install paths the deploy files name, as docs/operations.md installs them.
INSTALL_DIR = "/srv/mimamori"
DATA_DIR = "/var/lib/mimamori"
ENV_FILE = "/etc/mimamori/mimamori.env"
WEB_BIND = "127.0.0.1:8000"
SITE_HOST = "mimamori.example.jp"  # BASE_URL's host in the example environment file

# systemd's PATH for system services (Debian bookworm).
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
PASSWORD = "Deploy-check-2025-sakura"
# The client's address as nginx sees it (any 127/8 address is this machine's).
CLIENT_ADDRESS = "127.0.0.5"

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _postgres_server() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


# --- reading unit files and environment files ------------------------------------------------


@dataclass
class Unit:
    """A unit file's settings, section by section, in order (a key may repeat)."""

    name: str
    sections: dict[str, list[tuple[str, str]]]

    def values(self, section: str, key: str) -> list[str]:
        return [value for name, value in self.sections.get(section, []) if name == key]

    def value(self, section: str, key: str) -> str:
        (value,) = self.values(section, key)
        return value


def read_unit(path: Path, replacements: dict[str, str]) -> Unit:
    """Parse a unit file as systemd does: sections, Key=Value, comments, backslash continuations."""
    text = path.read_text()
    for old, new in replacements.items():
        text = text.replace(old, new)
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue  # also inside a continued line, as systemd reads it
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition("=")
        assert equals, f"{path.name}: not a setting: {line!r}"
        assert current is not None, f"{path.name}: a setting before the first section: {line!r}"
        current.append((key.strip(), value.strip()))
    assert not pending, f"{path.name}: a continuation line ends the file"
    return Unit(path.name, sections)


def specifiers(value: str, instance: str) -> str:
    """The unit specifiers the deploy units use: %i (the instance) and %% (a percent sign)."""

    def one(match: re.Match[str]) -> str:
        known = {"i": instance, "%": "%"}
        assert match.group(1) in known, f"a specifier this test does not know: %{match.group(1)}"
        return known[match.group(1)]

    return re.sub(r"%(.)", one, value)


def read_environment_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= reads the plain ones deploy/ promises."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, equals, value = line.partition("=")
        assert equals, f"{path}: not KEY=value: {line!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path}: not a variable's name: {line!r}"
        assert not re.search(r"[\s'\"$`\\]", value), f"{path}: not plain for systemd and sh alike: {line!r}"
        values[key] = value
    return values


def read_with_sh(path: Path) -> dict[str, str]:
    """What deploy/mimamori-admin and the Postfix bounce pipe see: the file sourced by sh."""
    listing = subprocess.run(
        ["sh", "-c", 'set -a; . "$0"; env -0', str(path)],
        env={"PATH": SYSTEMD_PATH},
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(item.split("=", 1) for item in listing.split("\0") if item)


# --- the installation: paths, environment file, processes ----------------------------------


@dataclass
class Installation:
    """This checkout installed the way the deploy files say, in a temporary directory."""

    directory: Path
    database_url: str
    email_url: str
    broker_url: str = ""
    queue_prefix: str = ""
    web_port: int = field(default_factory=free_port)
    services: list[Service] = field(default_factory=list)
    sink: Sink | None = None

    def __post_init__(self) -> None:
        self.data = self.directory / "data"
        self.data.mkdir(mode=0o750)
        self.env_file = self.directory / "mimamori.env"
        self.write_environment_file()

    @property
    def replacements(self) -> dict[str, str]:
        return {
            INSTALL_DIR: str(ROOT),
            DATA_DIR: str(self.data),
            ENV_FILE: str(self.env_file),
            WEB_BIND: f"127.0.0.1:{self.web_port}",
        }

    def write_environment_file(self) -> None:
        """deploy/mimamori.env.example with the lines the walkthrough edits filled in."""
        chosen = {
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "EMAIL_URL": self.email_url,
            "BROKER_URL": self.broker_url,
            "MIMAMORI_DATA_DIR": str(self.data),
        }
        lines = []
        for line in (DEPLOY / "mimamori.env.example").read_text().splitlines():
            key = line.partition("=")[0]
            if key in chosen and not line.startswith("#"):
                line = f"{key}={chosen.pop(key)}"
            lines.append(line)
        assert not chosen, f"the example has no line for {sorted(chosen)}"
        if self.queue_prefix:
            # Queues of this run alone on the shared test broker (a documented setting).
            lines.append(f"MIMAMORI_QUEUE_PREFIX={self.queue_prefix}")
        self.env_file.write_text("\n".join(lines) + "\n")
        self.env_file.chmod(0o640)

    def admin(self, *arguments: str, stdin: str = "") -> str:
        """deploy/mimamori-admin, as the walkthrough runs it, with this installation's file and program."""
        result = subprocess.run(
            [str(DEPLOY / "mimamori-admin"), *arguments],
            input=stdin,
            env={
                "PATH": SYSTEMD_PATH,
                "HOME": str(self.data),
                "MIMAMORI_ENV_FILE": str(self.env_file),
                "MIMAMORI_BIN": str(ROOT / ".venv" / "bin" / "mimamori"),
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, (
            f"mimamori-admin {' '.join(arguments)}:\n{result.stdout}{result.stderr}"
        )
        return result.stdout

    def service(self, unit_file: str, instance: str = "") -> Service:
        service = Service(self, read_unit(UNITS / unit_file, self.replacements), instance)
        self.services.append(service)
        return service

    def logs(self) -> str:
        received = []
        if self.sink is not None:
            with self.sink.lock:
                received = [(r, str(m["Subject"])) for r, m in self.sink.messages]
        return "\n".join([*(service.log() for service in self.services), f"--- the sink got {received}"])

    def check_running(self) -> None:
        for service in self.services:
            assert service.process is None or service.process.poll() is None, (
                f"{service.title} exited\n{self.logs()}"
            )

    def stop_all(self) -> list[tuple[str, int | None]]:
        return [(service.title, service.stop()) for service in reversed(self.services)]


@dataclass
class Service:
    """One unit's process: its ExecStart, its environment, its working directory."""

    installation: Installation
    unit: Unit
    instance: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def title(self) -> str:
        return self.unit.name.replace("@.", f"@{self.instance}.")

    @property
    def log_path(self) -> Path:
        return self.installation.directory / f"{self.title}.log"

    def command(self) -> list[str]:
        (line,) = self.unit.values("Service", "ExecStart")
        # systemd would expand $VAR here; the units use none, so the line is the command as written.
        assert "$" not in line, f"{self.title}: ExecStart uses a variable"
        argv = shlex.split(specifiers(line, self.instance))
        assert argv[0].startswith("/"), f"{self.title}: ExecStart needs an absolute path"
        return argv

    def environment(self, **extra: str) -> dict[str, str]:
        # What systemd gives a system service with User=, then Environment=, then EnvironmentFile=
        # (whose values win), then NOTIFY_SOCKET for Type=notify. HOME is the user's home, which
        # the walkthrough makes the data directory, the units' WorkingDirectory.
        home = self.unit.value("Service", "WorkingDirectory")
        environment = {"PATH": SYSTEMD_PATH, "HOME": home, "USER": "mimamori", "LOGNAME": "mimamori"}
        for assignments in self.unit.values("Service", "Environment"):
            for item in shlex.split(specifiers(assignments, self.instance)):
                key, _, value = item.partition("=")
                environment[key] = value
        for name in self.unit.values("Service", "EnvironmentFile"):
            environment |= read_environment_file(Path(name.removeprefix("-")))
        return environment | extra

    def start(self, **extra: str) -> None:
        directory = Path(self.unit.value("Service", "WorkingDirectory").removeprefix("-"))
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=directory,
                env=self.environment(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # the unit's control group: what KillMode= kills last
            )

    def stop(self) -> int | None:
        """As `systemctl stop` does with KillMode=mixed: SIGTERM to the main process, then after
        TimeoutStopSec SIGKILL to whatever is left of the unit."""
        process = self.process
        if process is None:
            return None
        assert self.unit.value("Service", "KillMode") == "mixed"
        if process.poll() is None:
            process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=float(self.unit.value("Service", "TimeoutStopSec")))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.title}\n{text[-4000:]}"


@contextlib.contextmanager
def private_database(directory: Path) -> Iterator[str]:
    """SQLite in the data directory, or a database of its own on the suite's PostgreSQL server."""
    server = _postgres_server()
    if server is None:
        yield f"sqlite:///{directory / 'data' / 'mimamori.sqlite3'}"
        return
    import psycopg
    from psycopg import sql

    name = f"mm_deploy_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(server)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _delete_broker_queues(prefix: str) -> None:
    from kombu import Connection

    with Connection(RABBITMQ) as connection:
        channel = connection.default_channel
        for name in QUEUES:
            channel.queue_delete(f"{prefix}{name}")
            channel.exchange_delete(f"{prefix}{name}")


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


# --- nginx in front ------------------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for SITE_HOST, which the test's client trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SITE_HOST)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SITE_HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Nginx:
    """deploy/nginx/mimamori.conf in a private nginx: its own prefix, ports, certificate and files."""

    directory: Path
    upstream: str
    http_port: int = field(default_factory=free_port)
    https_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.certificate, key = _certificate(self.directory)
        site = NGINX_SITE.read_text()
        # Only loopback here, and no IPv6 listeners (a container may have no IPv6).
        lines = [line for line in site.splitlines() if "listen [::]:" not in line]
        assert len(lines) == len(site.splitlines()) - 4
        site = "\n".join(lines)
        replacements = {
            "listen 80": f"listen 127.0.0.1:{self.http_port}",
            "listen 443": f"listen 127.0.0.1:{self.https_port}",
            f"/etc/letsencrypt/live/{SITE_HOST}/fullchain.pem": str(self.certificate),
            f"/etc/letsencrypt/live/{SITE_HOST}/privkey.pem": str(key),
            f"http://{WEB_BIND}": f"http://{self.upstream}",
        }
        for old, new in replacements.items():
            assert old in site, f"deploy/nginx/mimamori.conf no longer has {old!r}"
            site = site.replace(old, new)
        (self.directory / "mimamori.conf").write_text(site)
        # The http block of Debian's nginx.conf, reduced to what a private instance needs: the site
        # itself relies on nothing of it.
        temporary = "\n".join(
            f"  {kind}_temp_path {self.directory / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.directory / "nginx.conf").write_text(
            f"""daemon off;
worker_processes 1;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} info;
events {{ worker_connections 64; }}
http {{
  access_log {self.directory / "access.log"};
{temporary}
  include {self.directory / "mimamori.conf"};
}}
"""
        )

    def arguments(self) -> list[str]:
        assert NGINX is not None
        directory = str(self.directory)
        return [
            NGINX,
            "-p",
            directory,
            "-e",
            str(self.directory / "error.log"),
            "-c",
            str(self.directory / "nginx.conf"),
        ]

    def test_configuration(self) -> str:
        result = subprocess.run([*self.arguments(), "-t"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stderr

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful, as `systemctl stop nginx`
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def log(self) -> str:
        path = self.directory / "error.log"
        return f"--- nginx\n{path.read_text()[-4000:] if path.exists() else ''}"


@contextlib.contextmanager
def _nginx_directory() -> Iterator[Path]:
    # nginx's workers run as nobody when the test runs as root: a directory they may enter.
    directory = Path(tempfile.mkdtemp(prefix="mimamori-nginx-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# --- an HTTP client for the site, through nginx (TLS) or straight to gunicorn ------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class _TlsConnection(http.client.HTTPSConnection):
    """HTTPS to a loopback port, asking for SITE_HOST by name (SNI), from CLIENT_ADDRESS."""

    def __init__(self, port: int, context: ssl.SSLContext, server_name: str = SITE_HOST) -> None:
        super().__init__("127.0.0.1", port, context=context, timeout=60)
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout, (CLIENT_ADDRESS, 0))
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


@dataclass
class Browser:
    """Requests as a phone makes them to https://SITE_HOST: through nginx when it runs, else
    straight to gunicorn with the headers nginx would add."""

    web_port: int
    nginx: Nginx | None
    cookies: dict[str, str] = field(default_factory=dict)

    def connection(self) -> http.client.HTTPConnection:
        if self.nginx is not None:
            context = ssl.create_default_context(cafile=str(self.nginx.certificate))
            return _TlsConnection(self.nginx.https_port, context)
        return http.client.HTTPConnection("127.0.0.1", self.web_port, timeout=60)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        sent = {"Host": SITE_HOST, "Accept-Language": "ja", **(headers or {})}
        if self.nginx is None:
            sent |= {"X-Forwarded-Proto": "https", "X-Forwarded-For": CLIENT_ADDRESS}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = self.connection()
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        for header in answer.headers.get_all("Set-Cookie") or []:
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            self.cookies |= {name: morsel.value for name, morsel in cookie.items()}
        return answer

    def api(self, method: str, path: str, token: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        answer = self.request(method, f"/api/v1{path}", body, headers)
        assert 200 <= answer.status < 300, f"{method} {path}: {answer.status} {answer.text}"
        return answer.json()

    def form(self, path: str, fields: dict[str, str]) -> Answer:
        origin = f"https://{SITE_HOST}"
        return self.request(
            "POST",
            path,
            urllib.parse.urlencode(fields).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": origin,
                "Referer": origin + path,
            },
        )


# --- waiting -------------------------------------------------------------------------------


def until(condition: Callable[[], Any], what: str, installation: Installation, seconds: float = 60) -> Any:
    """Wait for ``condition()`` to be truthy; the deadline only bounds a broken run."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        installation.check_running()
        assert time.monotonic() < deadline, f"gave up waiting for {what}\n{installation.logs()}"
        time.sleep(0.2)


def mails(sink: Sink, recipient: str, subject: str) -> list[EmailMessage]:
    return [message for message in sink.to(recipient) if str(message["Subject"]) == subject]


def wait_ready(notify: socket.socket, installation: Installation) -> None:
    """Type=notify: gunicorn says READY=1 once it listens, as systemd waits for."""
    notify.settimeout(0.5)
    received = ""

    def ready() -> bool:
        nonlocal received
        with contextlib.suppress(TimeoutError):
            received += notify.recv(4096).decode() + "\n"
        return "READY=1" in received.splitlines()

    until(ready, "READY=1 from the web server", installation)


# --- the tests -----------------------------------------------------------------------------


def test_the_environment_file_reads_the_same_for_systemd_and_sh(tmp_path: Path) -> None:
    path = DEPLOY / "mimamori.env.example"
    for_systemd = read_environment_file(path)
    for_sh = read_with_sh(path)
    assert {key: for_sh.get(key) for key in for_systemd} == for_systemd
    assert {"DATABASE_URL", "SECRET_KEY", "BASE_URL", "EMAIL_URL", "BROKER_URL", "MIMAMORI_DATA_DIR"} <= set(
        for_systemd
    )

    # SECRET_KEY is left empty: until the walkthrough puts one there, nothing starts.
    assert for_systemd["SECRET_KEY"] == ""
    unfilled = tmp_path / "mimamori.env"
    assert f"={DATA_DIR}\n" in path.read_text()  # (the data directory is made at start: a temporary one)
    unfilled.write_text(path.read_text().replace(f"={DATA_DIR}\n", f"={tmp_path}\n"))
    result = subprocess.run(
        [str(DEPLOY / "mimamori-admin"), "check"],
        env={
            "PATH": SYSTEMD_PATH,
            "MIMAMORI_ENV_FILE": str(unfilled),
            "MIMAMORI_BIN": str(ROOT / ".venv" / "bin" / "mimamori"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Set SECRET_KEY" in result.stderr, result.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_knows_every_option_and_command_of_the_units(tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    env_file = tmp_path / "mimamori.env"
    env_file.write_text((DEPLOY / "mimamori.env.example").read_text())
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(INSTALL_DIR, str(ROOT)).replace(ENV_FILE, str(env_file))
        (tmp_path / unit.name).write_text(text)
    names = ["mimamori.target", "mimamori-web.service", "mimamori-worker@1.service"]
    names += [f"mimamori-queue@{queue}.service" for queue in ("urgent", "gates")]
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", *(f"./{name}" for name in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown options are only warned about (and ignored): any output is a fault.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make install-system installs it)")
def test_nginx_accepts_the_site_without_a_warning() -> None:
    with _nginx_directory() as directory:
        output = Nginx(directory, WEB_BIND).test_configuration()
        assert "test is successful" in output, output
        assert "[warn]" not in output, output


@pytest.fixture(params=["embedded", "celery"])
def installation(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Installation, Sink]]:
    broker, prefix = "", ""
    if request.param == "celery":
        if _postgres_server() is None:
            pytest.skip("distributed mode needs PostgreSQL (the PostgreSQL run of the suite)")
        assert _reachable("127.0.0.1", 5672), f"RabbitMQ is not reachable at {RABBITMQ}"
        broker, prefix = RABBITMQ, f"deploy{os.getpid()}-{secrets.token_hex(4)}-"
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with private_database(tmp_path) as database:
            installation = Installation(
                tmp_path, database, f"smtp://127.0.0.1:{controller.port}", broker, prefix, sink=sink
            )
            try:
                yield installation, sink
            finally:
                installation.stop_all()
                if prefix:
                    _delete_broker_queues(prefix)
    finally:
        controller.stop()


@pytest.mark.slow
def test_the_units_commands_serve_the_site_and_deliver(installation: tuple[Installation, Sink]) -> None:
    site, sink = installation
    # The walkthrough's steps: migrate, the first staff login and its API token, the check.
    site.admin("migrate", "--no-input")
    site.admin("createstaff", "admin", "--role", "centre", "--password-stdin", stdin=PASSWORD + "\n")
    token = site.admin("apitoken", "admin").strip()
    checked = site.admin("check", "--deploy")
    assert "no issues" in checked, checked

    with contextlib.ExitStack() as stack:
        notify_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "notify"
        notify = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        notify.bind(str(notify_path))
        web = site.service("mimamori-web.service")
        assert web.unit.value("Service", "Type") == "notify"
        web.start(NOTIFY_SOCKET=str(notify_path))
        # The dedicated workers alone first: what follows can only be their work.
        site.service("mimamori-queue@.service", "urgent").start()
        site.service("mimamori-queue@.service", "gates").start()
        wait_ready(notify, site)

        # The site answers at the unit's bind (nginx's health check).
        direct = http.client.HTTPConnection("127.0.0.1", site.web_port, timeout=30)
        direct.request("GET", "/healthz", headers={"Host": SITE_HOST})
        health = direct.getresponse()
        assert (health.status, health.read()) == (200, b"ok")
        direct.close()

        nginx = None
        if NGINX is not None:
            nginx = Nginx(stack.enter_context(_nginx_directory()), f"127.0.0.1:{site.web_port}")
            nginx.start()
            stack.callback(nginx.stop)
            until(lambda: _reachable("127.0.0.1", nginx.https_port), "nginx to listen", site)
        browser = Browser(site.web_port, nginx)
        try:
            _deliver(site, sink, browser, token)
            if nginx is not None:
                _through_nginx(browser, nginx, token)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{site.logs()}\n{nginx.log() if nginx else ''}") from error

    # `systemctl stop`: every process ends by itself on SIGTERM, within TimeoutStopSec.
    stopped = site.stop_all()
    assert all(status in (0, -signal.SIGTERM) for _, status in stopped), f"{stopped}\n{site.logs()}"


def _deliver(site: Installation, sink: Sink, browser: Browser, token: str) -> None:
    city = browser.api(
        "POST",
        "/municipalities",
        token,
        {"code": "haibi", "name": "配備市", "mail_domain": "mail.haibi.example.jp"},
    )
    school = browser.api(
        "POST",
        "/schools",
        token,
        {"municipality": city["code"], "name": "配備小学校", "sender_local_part": "haibi-sho"},
    )
    guardian = "haibi-hanako@gmail.com"
    browser.api(
        "POST",
        "/registrants",
        token,
        {
            "school": school["id"],
            "child_name": "配備 花子",
            "grade": 2,
            "class_name": "1",
            "addresses": [guardian],
            "tag_id": "TAG-0001",
        },
    )
    scope = {"schools": [school["id"]]}

    def broadcast(subject: str, *, urgent: bool = False, at: datetime | None = None) -> int:
        made = browser.api(
            "POST",
            "/broadcasts",
            token,
            {
                "scope": scope,
                "subject": subject,
                "body": "配備の確認です。",
                "request_confirmation": True,
                "urgent": urgent,
            },
        )
        browser.api("POST", f"/broadcasts/{made['id']}/send", token, {"at": at.isoformat()} if at else None)
        return int(made["id"])

    # mimamori-queue@urgent alone sends an urgent broadcast.
    urgent = broadcast("不審者情報（配備確認）", urgent=True)
    until(lambda: mails(sink, guardian, "【緊急】不審者情報（配備確認）"), "the urgent broadcast", site)

    # mimamori-queue@gates alone sends a child's 登校 mail.
    reader = browser.api("POST", "/gate-readers", token, {"school": school["id"], "name": "正門"})
    at = (datetime.now(UTC) - timedelta(seconds=30)).astimezone().isoformat()
    posted = browser.api(
        "POST",
        "/gate-events",
        reader["token"],
        {"events": [{"id": "e1", "tag": "TAG-0001", "direction": "in", "at": at}]},
    )
    assert posted["accepted"] == 1
    until(
        lambda: [m for m in sink.to(guardian) if str(m["Subject"]).startswith("【登校】配備 花子さん")],
        "the gate mail",
        site,
    )

    # A general worker (every queue, and the sweep): a broadcast now, and one at a time to come,
    # which nothing but the sweep sends.
    site.service("mimamori-worker@.service", "1").start()
    normal = broadcast("遠足のお知らせ（配備確認）")
    scheduled = broadcast("参観日のお知らせ（配備確認）", at=datetime.now(UTC) + timedelta(seconds=3))
    until(lambda: mails(sink, guardian, "遠足のお知らせ（配備確認）"), "the broadcast", site)
    until(lambda: mails(sink, guardian, "参観日のお知らせ（配備確認）"), "the scheduled broadcast", site)
    for number in (urgent, normal, scheduled):
        until(
            lambda number=number: browser.api("GET", f"/broadcasts/{number}", token)["status"] == "sent",  # type: ignore[misc]
            f"broadcast {number} marked sent",
            site,
        )

    # The guardian's confirmation link (under BASE_URL) works through the site.
    (message,) = mails(sink, guardian, "遠足のお知らせ（配備確認）")
    body = message.get_body(("plain",))
    assert body is not None
    link = re.search(rf"https://{re.escape(SITE_HOST)}(/c/\S+)", body.get_content())
    assert link is not None, body.get_content()
    assert browser.request("GET", link.group(1)).status == 200
    assert (
        browser.request(
            "POST", link.group(1), b"", {"Content-Type": "application/x-www-form-urlencoded"}
        ).status
        == 303
    )
    (receipt,) = browser.api("GET", f"/broadcasts/{normal}/receipts", token)["items"]
    assert receipt["confirmed_at"] is not None


def _through_nginx(browser: Browser, nginx: Nginx, token: str) -> None:
    # Plain http is sent to https, the same path.
    plain = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=30)
    plain.request("GET", "/portal/login/?next=/portal/", headers={"Host": SITE_HOST})
    redirect = plain.getresponse()
    assert (redirect.status, redirect.getheader("Location")) == (
        301,
        f"https://{SITE_HOST}/portal/login/?next=/portal/",
    )
    plain.close()

    # Another name gets no certificate at all.
    context = ssl.create_default_context(cafile=str(nginx.certificate))
    other = _TlsConnection(nginx.https_port, context, server_name="other.example.jp")
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        other.connect()
    other.close()

    # An https page: no redirect loop (Django sees https), HSTS once, from Django.
    page = browser.request("GET", "/portal/login/")
    assert page.status == 200, page.text
    assert len(page.headers.get_all("Strict-Transport-Security") or []) == 1

    # A console login: CSRF (origin and referer over https) and secure cookies across the proxy.
    login = browser.request("GET", "/console/login/")
    assert login.status == 200
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
    assert csrf is not None
    answer = browser.form(
        "/console/login/", {"csrfmiddlewaretoken": csrf.group(1), "username": "admin", "password": PASSWORD}
    )
    assert (answer.status, answer.headers["Location"]) == (302, "/console/"), answer.text
    assert "Secure" in " ".join(answer.headers.get_all("Set-Cookie") or [])
    assert browser.request("GET", "/console/").status == 200

    # The client's address, from X-Forwarded-For (MIMAMORI_PROXY_COUNT=1), in the audit log.
    events = browser.api("GET", "/audit-events?action=login.succeeded", token)["items"]
    assert [event["ip_address"] for event in events] == [CLIENT_ADDRESS]

    # Bodies: above the application's form limit, its own 413 page; above nginx's, nginx's 413.
    form = {"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{SITE_HOST}"}
    too_large = browser.request("POST", "/console/login/", b"a=" + b"x" * 3_000_000, form)
    assert too_large.status == 413
    assert "送信された内容が大きすぎます" in too_large.text, too_large.text
    json_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    big = b'{"body": "' + b"x" * 3_000_000 + b'"}'
    api_too_large = browser.request("POST", "/api/v1/broadcasts", big, json_headers)
    assert api_too_large.status == 413, api_too_large.text
    assert "大きすぎます" in api_too_large.json()["detail"]
    refused = browser.request("POST", "/console/login/", b"a=" + b"x" * 7_000_000, form)
    assert refused.status == 413
    assert "nginx" in refused.text, refused.text

"""Issue 15, part B: ingesting JMA documents (mimamori/quakes/ingest.py), `mimamori jma-ingest`
and the Atom feed poller (mimamori/quakes/feed.py) against a real HTTP server on loopback."""

from __future__ import annotations

import io
import logging
import os
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from mimamori.quakes import alerts, feed, jma
from mimamori.quakes.ingest import ingest
from mimamori.quakes.models import FeedEntryState, JmaDocument, JmaFeed, JmaFeedEntry
from mimamori.tasking import sweep

pytestmark = pytest.mark.django_db

DOCUMENTS = Path(__file__).parent / "jma"
SETTINGS = str(Path(__file__).parent.parent / "mimamori" / "settings.py")


def document(name: str) -> bytes:
    return (DOCUMENTS / name).read_bytes()


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[tuple[jma.Report, int]]:
    """What ingest hands to alerts.receive() (part C's), recorded on the way through to it."""
    calls: list[tuple[jma.Report, int]] = []
    real = alerts.receive

    def recording(report: jma.Report, document: JmaDocument) -> None:
        calls.append((report, document.pk))
        real(report, document)

    monkeypatch.setattr(alerts, "receive", recording)
    return calls


# --- ingest() and the command ---


def test_a_readable_document_is_recorded_and_handed_on_once(received: list[Any]) -> None:
    first = ingest(document("vxse53_iwamizawa.xml"), "/srv/jma/vxse53.xml")
    assert not first.duplicate
    assert not first.refused
    row = JmaDocument.objects.get()
    assert (row.kind, row.status, row.info_type, row.event_id, row.serial) == (
        "VXSE53",
        "通常",
        "発表",
        "20261207193012",
        1,
    )
    assert (row.title, row.max_intensity, row.refused, row.source) == (
        "震源・震度情報",
        "5-",
        "",
        "/srv/jma/vxse53.xml",
    )
    assert bytes(row.content) == document("vxse53_iwamizawa.xml")
    assert row.report() == jma.parse(document("vxse53_iwamizawa.xml"))
    assert row.summary["cities"][0] == {
        "code": "0121000",
        "name": "岩見沢市",
        "intensity": "5-",
        "unreported": False,
    }
    assert received == [(first.report, row.pk)]

    again = ingest(document("vxse53_iwamizawa.xml"), "the feed")
    assert again.duplicate
    assert again.document.pk == row.pk
    assert again.report == first.report
    assert JmaDocument.objects.count() == 1
    assert len(received) == 1


def test_refused_documents_are_logged_and_recorded_and_never_handed_on(
    received: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mimamori.quakes")
    bomb = ingest(document("billion_laughs.xml"), "bomb.xml")
    malformed = ingest(document("malformed.xml"), "malformed.xml")
    other = ingest(document("vxse52.xml"), "vxse52.xml")
    assert bomb.refused
    assert malformed.refused
    assert other.refused
    assert "DTD" in bomb.document.refused
    assert malformed.document.refused.startswith("not well-formed XML")
    assert other.document.refused == "震源に関する情報: not a report mimamori reads"
    assert (bomb.document.kind, bomb.document.summary, bomb.document.report()) == ("", {}, None)
    assert received == []
    levels = {record.getMessage().split(":")[0]: record.levelname for record in caplog.records}
    assert levels["JMA document from bomb.xml refused"] == "WARNING"
    assert levels["JMA document from malformed.xml refused"] == "WARNING"
    assert levels["JMA document from vxse52.xml not read"] == "INFO"
    assert JmaDocument.objects.filter(refused__gt="").count() == 3


def test_a_failing_receiver_leaves_no_record_so_the_document_is_taken_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(report: jma.Report, document: JmaDocument) -> None:
        raise RuntimeError("part C failed")

    monkeypatch.setattr(alerts, "receive", failing)
    with pytest.raises(RuntimeError):
        ingest(document("vxse53_iwamizawa.xml"), "x")
    assert not JmaDocument.objects.exists()
    monkeypatch.undo()
    assert not ingest(document("vxse53_iwamizawa.xml"), "x").duplicate


def ingest_command(*args: str, stdin: Any = None) -> str:
    out = io.StringIO()
    call_command("jma_ingest", *args, stdout=out, stdin=stdin)
    return out.getvalue()


def test_the_command_ingests_a_file_then_says_it_was_ingested_before(received: list[Any]) -> None:
    path = str(DOCUMENTS / "vxse53_iwamizawa.xml")
    output = ingest_command(path)
    row = JmaDocument.objects.get()
    assert output.startswith(
        f"ingested as document {row.pk}: VXSE53 震源・震度情報 通常 発表, EventID 20261207193012"
    )
    assert "serial 1, max intensity 5-" in output
    assert row.source == path
    assert ingest_command(path) == f"already ingested as document {row.pk}; nothing done again\n"
    assert len(received) == 1


def test_the_command_reads_standard_input(received: list[Any]) -> None:
    output = ingest_command("-", stdin=io.BytesIO(document("vxse51_iwamizawa.xml")))
    assert "VXSE51 震度速報 通常 発表, EventID 20261207193012, serial 0, max intensity 5-" in output
    assert JmaDocument.objects.get().source == "standard input"
    assert len(received) == 1


def test_the_command_refuses_with_a_one_line_reason(received: list[Any]) -> None:
    with pytest.raises(CommandError) as refused:
        ingest_command(str(DOCUMENTS / "external_entity.xml"))
    assert refused.value.returncode == 1
    assert str(refused.value).startswith("refused: the document has a DTD")
    assert "\n" not in str(refused.value)
    with pytest.raises(CommandError, match="refused \\(as before\\)"):
        ingest_command(str(DOCUMENTS / "external_entity.xml"))
    with pytest.raises(CommandError, match="cannot read"):
        ingest_command(str(DOCUMENTS / "missing.xml"))
    assert received == []


@pytest.mark.django_db(transaction=True)
def test_mimamori_jma_ingest_from_standard_input_exits_0_or_1(tmp_path: Path) -> None:
    """The console script as an operator runs it: on PostgreSQL the test database itself, on
    SQLite a database of its own (the tests' is in memory)."""
    environment = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    environment |= {"MIMAMORI_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    if connection.vendor == "postgresql":
        database = connection.settings_dict
        environment["DATABASE_URL"] = (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
        )

    def run(*args: str, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "mimamori", *args],
            input=data,
            env=environment,
            capture_output=True,
            timeout=120,
        )

    if connection.vendor != "postgresql":
        assert run("migrate", "-v", "0").returncode == 0
    done = run("jma-ingest", "-", data=document("vxse53_unreported.xml"))
    assert done.returncode == 0, done.stderr
    assert b"EventID 20261208061544, serial 1, max intensity 5-" in done.stdout
    refused = run("jma-ingest", "-", data=document("billion_laughs.xml"))
    assert refused.returncode == 1
    assert (
        refused.stderr.decode().splitlines()[-1].startswith("CommandError: refused: the document has a DTD")
    )
    if connection.vendor == "postgresql":
        assert JmaDocument.objects.get(event_id="20261208061544").source == "standard input"


# --- the Atom feed ---


class JmaServer:
    """JMA's feed and documents as a real HTTP server on loopback, with the troubles to test."""

    def __init__(self, port: int = 0) -> None:
        self.entries: list[tuple[str, str, datetime]] = []  # (title, file name, updated)
        self.last_modified = format_datetime(datetime(2026, 12, 7, 10, 35, tzinfo=UTC), usegmt=True)
        self.honour_if_modified_since = True
        self.failing: dict[str, int] = {}  # path → status
        self.slow: dict[str, float] = {}  # path → seconds before answering
        self.requests: list[tuple[str, str | None]] = []  # (path, If-Modified-Since)
        self.renamed: dict[str, str] = {}  # a name served → the file of tests/jma/ it serves
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("If-Modified-Since")))
                time.sleep(server.slow.get(self.path, 0))
                if self.path in server.failing:
                    self.send_error(server.failing[self.path])
                    return
                if self.path == "/eqvol.xml":
                    if_modified = self.headers.get("If-Modified-Since")
                    if server.honour_if_modified_since and if_modified == server.last_modified:
                        self.send_response(304)
                        self.end_headers()
                        return
                    body, kind = server.feed(), "application/atom+xml"
                elif self.path[6:] in server.renamed:
                    body, kind = document(server.renamed[self.path[6:]]), "application/xml"
                elif self.path.startswith("/data/") and (DOCUMENTS / self.path[6:]).is_file():
                    body, kind = (DOCUMENTS / self.path[6:]).read_bytes(), "application/xml"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Last-Modified", server.last_modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.http.daemon_threads = True
        self.http.block_on_close = False
        self.port = self.http.server_address[1]
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/eqvol.xml"

    def add(self, title: str, name: str, updated: datetime | None = None) -> None:
        self.entries.append((title, name, updated or timezone.now()))

    def feed(self) -> bytes:
        entries = "".join(
            f"<entry><title>{title}</title><id>http://127.0.0.1:{self.port}/data/{name}</id>"
            f"<updated>{updated.isoformat()}</updated><author><name>気象庁</name></author>"
            f'<link type="application/xml" href="/data/{name}"/>'
            f'<content type="text">【{title}】</content></entry>'
            for title, name, updated in reversed(self.entries)  # JMA lists the newest first
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom" lang="ja">'
            f"<title>高頻度（地震火山）</title><id>{self.url}</id><updated>2026-12-07T10:35:00Z</updated>"
            f"{entries}</feed>"
        ).encode()

    def documents_fetched(self) -> list[str]:
        return [path[6:] for path, _ in self.requests if path.startswith("/data/")]

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def jma_server() -> Iterator[JmaServer]:
    server = JmaServer()
    yield server
    server.stop()


def poll(server: JmaServer) -> int:
    with override_settings(MIMAMORI_JMA_POLL_SECONDS=0):
        return feed.poll(server.url)


def test_each_entry_is_fetched_once_and_if_modified_since_is_sent(
    jma_server: JmaServer, received: list[Any]
) -> None:
    now = timezone.now()
    jma_server.add("震度速報", "vxse51_iwamizawa.xml", now - timedelta(minutes=3))
    jma_server.add("震源に関する情報", "vxse52.xml", now - timedelta(minutes=2))
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml", now - timedelta(minutes=1))

    assert poll(jma_server) == 2
    assert jma_server.requests[0] == ("/eqvol.xml", None)
    # Oldest first; the 震源に関する情報 is not one mimamori reads and is never fetched.
    assert jma_server.documents_fetched() == ["vxse51_iwamizawa.xml", "vxse53_iwamizawa.xml"]
    assert [(report.kind, report.serial) for report, _ in received] == [("VXSE51", 0), ("VXSE53", 1)]
    row = JmaFeed.objects.get()
    assert (row.last_modified, row.trouble, row.polling_until) == (jma_server.last_modified, "", None)
    assert set(JmaFeedEntry.objects.values_list("state", flat=True)) == {FeedEntryState.FETCHED}
    assert JmaFeedEntry.objects.get(url__endswith="vxse51_iwamizawa.xml").document == JmaDocument.objects.get(
        kind="VXSE51"
    )

    # Nothing new: the feed answers 304 to the Last-Modified it gave.
    assert poll(jma_server) == 0
    assert jma_server.requests[-1] == ("/eqvol.xml", jma_server.last_modified)
    assert len(jma_server.documents_fetched()) == 2

    # A new entry (and a new Last-Modified): only it is fetched.
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa_serial2.xml")
    jma_server.last_modified = format_datetime(datetime(2026, 12, 7, 10, 42, tzinfo=UTC), usegmt=True)
    assert poll(jma_server) == 1
    assert jma_server.documents_fetched()[2:] == ["vxse53_iwamizawa_serial2.xml"]

    # A server that ignores If-Modified-Since lists them all again: none is fetched twice.
    jma_server.honour_if_modified_since = False
    assert poll(jma_server) == 0
    assert len(jma_server.documents_fetched()) == 3
    assert len(received) == 3


def test_an_entry_is_chosen_by_its_link_name_too(jma_server: JmaServer, received: list[Any]) -> None:
    # A title mimamori does not know, linking a file JMA names as a VXSE53.
    jma_server.renamed["20261209021700_0_VXSE53_010000.xml"] = "vxse53_shindo4.xml"
    jma_server.add("地震情報", "20261209021700_0_VXSE53_010000.xml")
    jma_server.add("地震情報", "vxse53_iwamizawa.xml")  # neither: not fetched
    assert poll(jma_server) == 1
    assert jma_server.documents_fetched() == ["20261209021700_0_VXSE53_010000.xml"]
    assert received[0][0].event_id == "20261209021507"


def test_at_the_first_poll_old_entries_are_recorded_not_fetched(
    jma_server: JmaServer, received: list[Any]
) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_shindo4.xml", timezone.now() - timedelta(hours=2))
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    assert poll(jma_server) == 1
    assert jma_server.documents_fetched() == ["vxse53_iwamizawa.xml"]
    assert JmaFeedEntry.objects.get(url__endswith="shindo4.xml").state == FeedEntryState.SKIPPED
    # Later, an entry that was a while in coming is fetched whatever its age.
    jma_server.add("震源・震度に関する情報", "vxse53_unreported.xml", timezone.now() - timedelta(hours=1))
    jma_server.last_modified = "Mon, 07 Dec 2026 11:00:00 GMT"
    assert poll(jma_server) == 1


def test_the_feed_away_is_logged_and_tried_again(
    jma_server: JmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    port = jma_server.port
    jma_server.stop()
    caplog.set_level(logging.INFO, logger="mimamori.quakes")
    assert poll(jma_server) == 0
    warning = next(r for r in caplog.records if r.levelname == "WARNING")
    assert warning.getMessage().startswith(f"JMA feed {jma_server.url}: unreachable (")
    assert warning.getMessage().endswith("trying again at the next poll")
    assert JmaFeed.objects.get().trouble.startswith("feed: unreachable")

    back = JmaServer(port)
    try:
        back.entries = jma_server.entries
        assert poll(back) == 1
        assert JmaFeed.objects.get().trouble == ""
    finally:
        back.stop()


def test_a_500_from_the_feed_or_a_document_is_tried_again(
    jma_server: JmaServer, received: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    jma_server.failing["/eqvol.xml"] = 500
    assert poll(jma_server) == 0
    assert JmaFeed.objects.get().trouble == "feed: HTTP 500 Internal Server Error"
    assert "JMA feed" in caplog.text
    assert "HTTP 500" in caplog.text

    del jma_server.failing["/eqvol.xml"]
    jma_server.failing["/data/vxse53_iwamizawa.xml"] = 500
    assert poll(jma_server) == 0
    entry = JmaFeedEntry.objects.get()
    assert (entry.state, entry.attempts) == (FeedEntryState.PENDING, 1)
    assert "trying again at the next poll (attempt 1 of 10)" in caplog.text

    # The feed has nothing new (304), but the pending entry is fetched again.
    del jma_server.failing["/data/vxse53_iwamizawa.xml"]
    assert poll(jma_server) == 1
    assert jma_server.requests[-2] == ("/eqvol.xml", jma_server.last_modified)
    entry.refresh_from_db()
    assert (entry.state, entry.attempts) == (FeedEntryState.FETCHED, 2)
    assert len(received) == 1


def test_a_document_that_keeps_failing_is_given_up(
    jma_server: JmaServer, caplog: pytest.LogCaptureFixture
) -> None:
    jma_server.add("震源・震度に関する情報", "missing.xml")  # 404
    for _ in range(feed.MAX_ATTEMPTS):
        poll(jma_server)
    entry = JmaFeedEntry.objects.get()
    assert (entry.state, entry.attempts) == (FeedEntryState.FAILED, feed.MAX_ATTEMPTS)
    assert "given up after 10 attempts: HTTP 404" in caplog.text
    poll(jma_server)
    assert jma_server.documents_fetched().count("missing.xml") == feed.MAX_ATTEMPTS


@override_settings(MIMAMORI_JMA_TIMEOUT_SECONDS=0.5)
def test_a_slow_server_times_out_and_is_tried_again(jma_server: JmaServer, received: list[Any]) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    jma_server.slow["/eqvol.xml"] = 2
    began = time.monotonic()
    assert poll(jma_server) == 0
    assert time.monotonic() - began < 1.5
    assert JmaFeed.objects.get().trouble == "feed: no answer within 0.5 s"

    del jma_server.slow["/eqvol.xml"]
    jma_server.slow["/data/vxse53_iwamizawa.xml"] = 2
    assert poll(jma_server) == 0
    assert "no answer within 0.5 s" in JmaFeed.objects.get().trouble
    assert JmaFeedEntry.objects.get().state == FeedEntryState.PENDING

    del jma_server.slow["/data/vxse53_iwamizawa.xml"]
    assert poll(jma_server) == 1
    assert len(received) == 1


def test_workers_share_one_poll(jma_server: JmaServer) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    with override_settings(MIMAMORI_JMA_POLL_SECONDS=10):
        now = timezone.now()
        assert feed.poll(jma_server.url, now) == 1
        # Another worker's sweep a moment later: not due, no request at all.
        assert feed.poll(jma_server.url, now + timedelta(seconds=5)) == 0
        assert len(jma_server.requests) == 2
        # A worker holds the feed (its lease runs): the others keep off even when it is due.
        JmaFeed.objects.update(polling_until=now + timedelta(seconds=60))
        assert feed.poll(jma_server.url, now + timedelta(seconds=30)) == 0
        assert len(jma_server.requests) == 2
        # Its lease ran out (it died): the next worker polls.
        assert feed.poll(jma_server.url, now + timedelta(seconds=61)) == 0
        assert len(jma_server.requests) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent writers need PostgreSQL")
def test_workers_polling_at_once_ingest_each_document_once(jma_server: JmaServer) -> None:
    for name in ("vxse51_iwamizawa.xml", "vxse53_iwamizawa.xml", "vxse53_unreported.xml"):
        jma_server.add("震源・震度に関する情報", name)
    counts: list[int] = []

    def worker() -> None:
        from django.db import connections

        try:
            with override_settings(MIMAMORI_JMA_POLL_SECONDS=0):
                for _ in range(3):
                    counts.append(feed.poll(jma_server.url))
                    # Every worker's own ingest of the same bytes: a duplicate, never a second row.
                    counts.append(0 if ingest(document("vxse53_iwamizawa.xml"), "x").duplicate else 1)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 3
    assert JmaDocument.objects.count() == 3
    assert sorted(jma_server.documents_fetched()) == sorted(name for _, name, _ in jma_server.entries)


def test_the_sweep_polls_the_configured_feed_and_nothing_when_unset(jma_server: JmaServer) -> None:
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    with override_settings(MIMAMORI_JMA_FEED_URL=None):
        assert "jma_documents" not in sweep.sweep()
    assert not JmaFeed.objects.exists()
    with override_settings(MIMAMORI_JMA_FEED_URL=jma_server.url, MIMAMORI_JMA_POLL_SECONDS=10):
        assert sweep.sweep()["jma_documents"] == 1
        assert sweep.sweep()["jma_documents"] == 0  # not due yet
    assert JmaDocument.objects.get().source == f"http://127.0.0.1:{jma_server.port}/data/vxse53_iwamizawa.xml"


def test_a_feed_that_is_not_atom_or_has_a_dtd_is_refused(jma_server: JmaServer) -> None:
    with pytest.raises(feed.FetchFailed, match="not readable Atom"):
        feed.read_feed(document("billion_laughs.xml"), jma_server.url)
    with pytest.raises(feed.FetchFailed, match="not an Atom feed"):
        feed.read_feed(document("vxse53_iwamizawa.xml"), jma_server.url)
    # A link to anything but http(s) is skipped.
    atom = (
        '<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>震度速報</title><id>x</id>'
        '<link href="file:///etc/passwd"/></entry></feed>'
    ).encode()
    assert feed.read_feed(atom, jma_server.url) == []
    broken = atom.replace(b"file:///etc/passwd", b"http://[::1/data/x_VXSE53_.xml")
    assert feed.read_feed(broken, jma_server.url) == []
    with pytest.raises(feed.FetchFailed, match="not an http"):
        feed.fetch("http://[::1/eqvol.xml")


@pytest.mark.parametrize("url", ["ftp://jma.example/eqvol.xml", "file:///etc/passwd", "eqvol.xml"])
def test_a_feed_url_that_is_not_http_stops_the_process_at_start(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMAMORI_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MIMAMORI_JMA_FEED_URL", url)
    with pytest.raises(
        ImproperlyConfigured, match="MIMAMORI_JMA_FEED_URL must be an http:// or https:// URL"
    ):
        runpy.run_path(SETTINGS)
    monkeypatch.setenv("MIMAMORI_JMA_FEED_URL", "https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml")
    assert runpy.run_path(SETTINGS)["MIMAMORI_JMA_POLL_SECONDS"] == 10


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the worker shares the PostgreSQL test database"
)
def test_a_worker_polls_the_feed_in_its_sweep(jma_server: JmaServer, tmp_path: Path) -> None:
    """The production path: `mimamori worker` with MIMAMORI_JMA_FEED_URL set ingests what the
    feed lists, from its sweep thread."""
    jma_server.add("震度速報", "vxse51_iwamizawa.xml")
    jma_server.add("震源・震度に関する情報", "vxse53_iwamizawa.xml")
    database = connection.settings_dict
    environment = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "BROKER_URL"}}
    environment |= {
        "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}",
        "SECRET_KEY": "jma-feed-test",
        "MIMAMORI_DATA_DIR": str(tmp_path),
        "MIMAMORI_SWEEP_SECONDS": "1",
        "MIMAMORI_JMA_FEED_URL": jma_server.url,
        "MIMAMORI_JMA_POLL_SECONDS": "1",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "mimamori", "worker", "--queues=default"],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while JmaDocument.objects.count() < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert sorted(JmaDocument.objects.values_list("kind", flat=True)) == ["VXSE51", "VXSE53"], (
            log.read_text()
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert jma_server.documents_fetched() == ["vxse51_iwamizawa.xml", "vxse53_iwamizawa.xml"]
    assert "JMA document from http://127.0.0.1" in log.read_text()

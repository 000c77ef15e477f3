"""Polling JMA's Atom feed (MIMAMORI_JMA_FEED_URL, e.g. JMA's 高頻度フィード 地震火山
https://www.data.jma.go.jp/developer/xml/feed/eqvol.xml): a step of the workers' sweep.

sweep (every worker, every MIMAMORI_SWEEP_SECONDS)
  → poll_due(): one conditional UPDATE claims the feed's row when MIMAMORI_JMA_POLL_SECONDS have
    passed since the last poll and no other worker holds it (a lease, so a worker that died is
    replaced): the workers of every machine share one poll.
  → GET the feed with If-Modified-Since (the Last-Modified kept in that row); 304: nothing new.
  → each entry titled 震度速報 or 震源・震度に関する情報 (or linking a VXSE51/VXSE53 file) gets a
    JmaFeedEntry row, once (unique per feed and Atom id).
  → every pending entry, oldest first (a 取消 after what it cancels), is fetched and handed to
    ingest.ingest(); fetched, it is never fetched again; failed, it stays pending and is tried at
    the next polls, MAX_ATTEMPTS times in all.

The feed or a document being away, slow (MIMAMORI_JMA_TIMEOUT_SECONDS per request, the whole
answer included) or answering 500 is logged at warning and tried again at the next poll; nothing
here raises into the sweep but the database's own failures. Two workers can never ingest a
document twice: the poll is claimed by one, and the document's digest is unique besides.

Why a sweep step and not a task: the sweep already runs every few seconds on every worker, in a
thread of its own, so a slow feed delays no mail; a task would wait in a queue behind a large
broadcast's chunks, or hold the urgent worker during a timeout.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from mimamori.quakes import jma
from mimamori.quakes.ingest import ingest
from mimamori.quakes.models import FeedEntryState, JmaFeed, JmaFeedEntry

log = logging.getLogger(__name__)

ATOM = "http://www.w3.org/2005/Atom"
TITLES = {"震度速報", "震源・震度に関する情報"}
FILE_KINDS = ("_VXSE51_", "_VXSE53_")  # JMA's file names: 20260101000000_0_VXSE53_010000.xml
# A document whose fetch failed this often (about MAX_ATTEMPTS × the poll interval) is given up.
MAX_ATTEMPTS = 10
# How long one poll may hold the feed: a worker that died mid-poll is replaced after this.
LEASE = timedelta(seconds=60)
# At a feed's first poll, entries older than this are recorded but not fetched: turning the feed
# on must not send an 安否確認 for a quake from hours ago (JMA's feeds list the past hours).
FIRST_POLL_WINDOW = timedelta(minutes=10)
# Entries are remembered this long, far beyond the time JMA keeps them in the feed.
KEEP_ENTRIES = timedelta(days=7)
MAX_FEED_BYTES = 5 * 1024 * 1024
USER_AGENT = "mimamori-jma-feed/1"


class FetchFailed(Exception):
    """The feed or a document could not be had this time; the message says why, in one line."""


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would follow a redirect to ftp:// too; a feed or document is only ever http(s).
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> Any:
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise FetchFailed(f"redirected away from http(s) to {jma.one_line(newurl)[:200]}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpRedirects)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Message
    body: bytes


def fetch(url: str, headers: dict[str, str] | None = None, limit: int = MAX_FEED_BYTES) -> Answer:
    """GET ``url`` within MIMAMORI_JMA_TIMEOUT_SECONDS in all (urllib's own timeout is per socket
    operation: a server trickling bytes would never time out). 304 is an answer; any other
    failure raises FetchFailed."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("http", "https"):
        raise FetchFailed(f"not an http(s) URL: {jma.one_line(url)[:200]}")
    seconds = float(settings.MIMAMORI_JMA_TIMEOUT_SECONDS)
    deadline = time.monotonic() + seconds
    # S310: the scheme is checked above, and redirects by _HttpRedirects.
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})  # noqa: S310
    try:
        with _opener.open(request, timeout=seconds) as response:
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(65536):
                size += len(chunk)
                if size > limit:
                    raise FetchFailed(f"larger than {limit} bytes")
                if time.monotonic() > deadline:
                    raise FetchFailed(f"no complete answer within {seconds:g} s")
                chunks.append(chunk)
            return Answer(response.status, response.headers, b"".join(chunks))
    except urllib.error.HTTPError as error:
        if error.code == 304:
            return Answer(304, error.headers, b"")
        raise FetchFailed(f"HTTP {error.code} {jma.one_line(str(error.reason))[:100]}") from None
    except urllib.error.URLError as error:
        raise FetchFailed(f"unreachable ({jma.one_line(str(error.reason))[:200]})") from None
    except TimeoutError:
        raise FetchFailed(f"no answer within {seconds:g} s") from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        # ValueError: a URL urllib cannot use (a broken host, a stray character).
        raise FetchFailed(f"{type(error).__name__}: {jma.one_line(str(error))[:200]}") from None


@dataclass(frozen=True)
class Entry:
    entry_id: str
    url: str
    title: str
    updated: datetime | None


def _child_text(entry: Element, name: str) -> str:
    node = entry.find(f"{{{ATOM}}}{name}")
    return jma.one_line(node.text) if node is not None else ""


def read_feed(data: bytes, base_url: str) -> list[Entry]:
    """The entries of an Atom feed that name a document mimamori reads (raises FetchFailed for a
    feed that is not one)."""
    try:
        root = fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as error:
        raise FetchFailed(f"the feed is not readable Atom ({jma.one_line(str(error))[:200]})") from None
    if root.tag != f"{{{ATOM}}}feed":
        raise FetchFailed("the feed is not an Atom feed")
    found = []
    for entry in root.findall(f"{{{ATOM}}}entry"):
        title = _child_text(entry, "title")
        entry_id = _child_text(entry, "id")
        links = [link.get("href") or "" for link in entry.findall(f"{{{ATOM}}}link") if link.get("href")]
        href = links[0] if links else entry_id  # JMA's <id> is the document's URL as well
        try:
            url = urljoin(base_url, jma.one_line(href))
            scheme = urlsplit(url).scheme
        except ValueError:  # e.g. a broken IPv6 host
            url, scheme = href, ""
        if not (title in TITLES or any(kind in url for kind in FILE_KINDS)):
            continue
        if scheme not in ("http", "https") or len(url) > 500:
            log.warning("JMA feed entry %r links no http(s) document; skipped", entry_id[:200])
            continue
        updated_text = _child_text(entry, "updated")
        try:
            updated = datetime.fromisoformat(updated_text) if updated_text else None
        except ValueError:
            updated = None
        if updated is not None and updated.tzinfo is None:
            updated = None
        found.append(Entry(entry_id=(entry_id or url)[:500], url=url, title=title[:200], updated=updated))
    return found


def poll_due(now: datetime) -> dict[str, int]:
    """The sweep's step: poll the configured feed if its time has come (nothing at all when
    MIMAMORI_JMA_FEED_URL is unset)."""
    url = settings.MIMAMORI_JMA_FEED_URL
    if not url:
        return {}
    return {"jma_documents": poll(url, now)}


def poll(url: str, now: datetime | None = None) -> int:
    """Poll ``url`` once if no other worker polled it within MIMAMORI_JMA_POLL_SECONDS or holds
    it now; the number of documents ingested."""
    now = now or timezone.now()
    feed, _ = JmaFeed.objects.get_or_create(url=url)
    due = now - timedelta(seconds=settings.MIMAMORI_JMA_POLL_SECONDS)
    claimed = (
        JmaFeed.objects.filter(pk=feed.pk)
        .filter(Q(polling_until__isnull=True) | Q(polling_until__lt=now))
        .filter(Q(polled_at__isnull=True) | Q(polled_at__lte=due))
        .update(polled_at=now, polling_until=now + LEASE)
    )
    if not claimed:
        return 0
    feed.refresh_from_db()
    try:
        return _poll(feed, now)
    finally:
        JmaFeed.objects.filter(pk=feed.pk).update(polling_until=None)


def _poll(feed: JmaFeed, now: datetime) -> int:
    trouble = ""
    headers = {"Accept": "application/atom+xml, application/xml;q=0.9, */*;q=0.1"}
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    try:
        answer = fetch(feed.url, headers)
        if answer.status == 200:
            _record(feed, read_feed(answer.body, feed.url), now)
            feed.last_modified = jma.one_line(answer.headers.get("Last-Modified"))[:100]
        elif answer.status != 304:
            raise FetchFailed(f"HTTP {answer.status}")
        feed.answered_at = timezone.now()
    except FetchFailed as error:
        trouble = f"feed: {error}"
        log.warning("JMA feed %s: %s; trying again at the next poll", feed.url, error)
    ingested, failures = _fetch_pending(feed, deadline=time.monotonic() + LEASE.total_seconds() / 2)
    feed.trouble = "; ".join(part for part in (trouble, failures) if part)[:500]
    feed.save(update_fields=["last_modified", "answered_at", "trouble"])
    JmaFeedEntry.objects.filter(feed=feed, seen_at__lt=now - KEEP_ENTRIES).exclude(
        state=FeedEntryState.PENDING
    ).delete()
    return ingested


def _record(feed: JmaFeed, entries: list[Entry], now: datetime) -> None:
    first = feed.answered_at is None
    rows = []
    for entry in entries:
        stale = first and entry.updated is not None and entry.updated < now - FIRST_POLL_WINDOW
        rows.append(
            JmaFeedEntry(
                feed=feed,
                entry_id=entry.entry_id,
                url=entry.url,
                title=entry.title,
                updated=entry.updated,
                seen_at=now,
                state=FeedEntryState.SKIPPED if stale else FeedEntryState.PENDING,
            )
        )
    # An entry already recorded (listed again by a later version of the feed) is left as it is.
    JmaFeedEntry.objects.bulk_create(rows, ignore_conflicts=True)
    skipped = sum(row.state == FeedEntryState.SKIPPED for row in rows)
    if skipped:
        log.info("JMA feed %s first polled: %s older entries recorded, not fetched", feed.url, skipped)


def _fetch_pending(feed: JmaFeed, deadline: float) -> tuple[int, str]:
    ingested = 0
    failures: list[str] = []
    pending = JmaFeedEntry.objects.filter(feed=feed, state=FeedEntryState.PENDING).order_by(
        F("updated").asc(nulls_last=True), "pk"
    )
    for entry in pending:
        if time.monotonic() > deadline:
            break  # the rest at the next poll, before the lease runs out
        try:
            answer = fetch(entry.url, limit=jma.MAX_DOCUMENT_BYTES)
            if answer.status != 200:
                raise FetchFailed(f"HTTP {answer.status}")
            outcome = ingest(answer.body, entry.url)
        except FetchFailed as error:
            failures.append(f"{entry.url}: {error}")
            _failed(entry, str(error))
            continue
        except Exception as error:
            # receive() (or the database) failed: the document was not recorded; try it again.
            log.exception("JMA document %s could not be ingested", entry.url)
            failures.append(f"{entry.url}: {type(error).__name__}")
            _failed(entry, type(error).__name__)
            continue
        entry.state = FeedEntryState.FETCHED
        entry.document = outcome.document
        entry.attempts += 1
        entry.save(update_fields=["state", "document", "attempts"])
        ingested += not outcome.duplicate
    return ingested, "; ".join(failures)


def _failed(entry: JmaFeedEntry, reason: str) -> None:
    entry.attempts += 1
    if entry.attempts >= MAX_ATTEMPTS:
        entry.state = FeedEntryState.FAILED
        log.error("JMA document %s given up after %s attempts: %s", entry.url, entry.attempts, reason)
    else:
        log.warning(
            "JMA document %s: %s; trying again at the next poll (attempt %s of %s)",
            entry.url,
            reason,
            entry.attempts,
            MAX_ATTEMPTS,
        )
    entry.save(update_fields=["state", "attempts"])

"""One JMA document in: `mimamori jma-ingest` and the feed poller (quakes/feed.py) both call
ingest().

bytes → digest: seen before? → the recorded row, nothing else happens (a duplicate)
      → jma.parse() → JmaDocument (the Report as JSON, or the reason it was refused)
      → alerts.receive(report, document), in the same transaction as the row.

Recording and handing on are one transaction: if receive() fails, the row is not kept either,
so the same document given again (the feed retries it) is not taken for a duplicate and lost.
The digest is unique in the database, so two workers given the same document at once record and
hand it on once; the other gets the row as a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from mimamori.quakes import alerts, jma
from mimamori.quakes.models import JmaDocument

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ingested:
    document: JmaDocument
    report: jma.Report | None  # None: refused (document.refused says why)
    duplicate: bool  # the same bytes were recorded before; nothing was done this time

    @property
    def refused(self) -> bool:
        return self.report is None


def _describe(report: jma.Report) -> str:
    return (
        f"{report.kind} {report.title} {report.status} {report.info_type} EventID {report.event_id} "
        f"serial {report.serial} max intensity {report.max_intensity or '-'}"
    )


def ingest(data: bytes, source: str) -> Ingested:
    """Record one document (its bytes as received, from ``source``) and hand a new, readable one to
    alerts.receive(). A refused document is logged and recorded, never raised; only receive()'s
    own failure (or the database's) propagates."""
    source = jma.one_line(source)[:500] or "unknown"
    digest = hashlib.sha256(data).hexdigest()
    known = JmaDocument.objects.filter(digest=digest).first()
    if known is not None:
        log.info("JMA document from %s already ingested (document %s)", source, known.pk)
        return Ingested(known, known.report(), duplicate=True)

    report: jma.Report | None = None
    refused = ""
    try:
        report = jma.parse(data)
    except jma.NotRead as error:
        refused = str(error)
        log.info("JMA document from %s not read: %s", source, refused)
    except jma.DocumentRefused as error:
        refused = str(error) or "refused"
        log.warning("JMA document from %s refused: %s", source, refused)

    # Bytes beyond the limit were refused unread and are not kept either.
    content = data if len(data) <= jma.MAX_DOCUMENT_BYTES else b""
    document = JmaDocument(source=source, digest=digest, content=content, refused=refused[:500])
    if report is not None:
        document.kind = report.kind.value
        document.status = report.status.value
        document.info_type = report.info_type.value
        document.event_id = report.event_id
        document.serial = report.serial
        document.title = report.title[:200]
        document.reported_at = report.reported_at
        document.max_intensity = report.max_intensity or ""
        document.summary = jma.as_json(report)

    with transaction.atomic():
        try:
            with transaction.atomic():
                document.save(force_insert=True)
        except IntegrityError:
            duplicate = True
        else:
            duplicate = False
            if report is not None:
                alerts.receive(report, document)
    if duplicate:
        # Another worker recorded the same bytes between our look and our insert.
        known = JmaDocument.objects.get(digest=digest)
        log.info("JMA document from %s already ingested (document %s)", source, known.pk)
        return Ingested(known, known.report(), duplicate=True)
    if report is not None:
        log.info("JMA document from %s ingested (document %s): %s", source, document.pk, _describe(report))
    return Ingested(document, report, duplicate=False)

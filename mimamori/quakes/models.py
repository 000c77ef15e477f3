"""What mimamori keeps of earthquakes: every JMA document it was given, and the state of the
Atom feed it polls (part B); the municipalities' settings and the broadcasts a report starts
are added beside them (part C)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from mimamori.quakes import jma
from mimamori.text import single_line


def _choices(values: type[jma.Kind | jma.Status | jma.InfoType]) -> list[tuple[str, str]]:
    return [(value.value, value.value) for value in values]


# --- JMA documents (part B) ---


class JmaDocument(models.Model):
    """One JMA disaster XML document, recorded once (by the SHA-256 of its bytes) whether it was
    read or refused. A readable one keeps its Report as JSON (``report()`` gives it back, so a task
    that carries only this row's id sees exactly what the ingest saw); a refused one keeps the
    reason instead."""

    received_at = models.DateTimeField(default=timezone.now)
    # Where it came from: a file path, "standard input", or the document's URL in the feed.
    source = models.CharField(max_length=500, validators=[single_line])
    digest = models.CharField(max_length=64, unique=True)
    # The bytes as received (at most jma.MAX_DOCUMENT_BYTES), for the console and for operators.
    content = models.BinaryField()
    kind = models.CharField(max_length=6, choices=_choices(jma.Kind), blank=True)
    status = models.CharField(max_length=2, choices=_choices(jma.Status), blank=True)
    info_type = models.CharField(max_length=2, choices=_choices(jma.InfoType), blank=True)
    event_id = models.CharField(max_length=40, blank=True, validators=[single_line])
    serial = models.PositiveIntegerField(null=True, blank=True)
    title = models.CharField(max_length=200, blank=True, validators=[single_line])
    reported_at = models.DateTimeField(null=True, blank=True)
    max_intensity = models.CharField(
        max_length=2, blank=True, choices=[(value, value) for value in jma.INTENSITIES]
    )
    # jma.as_json(report): areas, cities, headline, hypocentre … ({} when refused).
    summary = models.JSONField(default=dict, blank=True)
    # Why it was refused (jma.DocumentRefused's message); empty for a readable document.
    refused = models.CharField(max_length=500, blank=True, validators=[single_line])

    class Meta:
        indexes = [models.Index(fields=["event_id", "serial"]), models.Index(fields=["-received_at"])]

    def __str__(self) -> str:
        if self.refused:
            return f"refused ({self.refused})"
        return f"{self.kind} {self.status} {self.info_type} {self.event_id} #{self.serial}"

    def report(self) -> jma.Report | None:
        """The Report read from this document; None if it was refused."""
        return jma.from_json(self.summary) if not self.refused and self.summary else None


class JmaFeed(models.Model):
    """The Atom feed in MIMAMORI_JMA_FEED_URL, as every worker sees it: one row per URL holds its
    Last-Modified (for If-Modified-Since) and who polls it now, so the workers of all machines
    share one poll every MIMAMORI_JMA_POLL_SECONDS."""

    url = models.CharField(max_length=500, unique=True, validators=[single_line])
    # The feed's Last-Modified header as the server wrote it, sent back as If-Modified-Since.
    last_modified = models.CharField(max_length=100, blank=True, validators=[single_line])
    polled_at = models.DateTimeField(null=True, blank=True)  # the last poll's start
    # A worker polling holds the feed until then (a lease: one that died is replaced after it).
    polling_until = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)  # the feed's last 200 or 304
    # What went wrong at the last poll (the feed away, a timeout, a 500); empty when all went well.
    trouble = models.CharField(max_length=500, blank=True, validators=[single_line])

    def __str__(self) -> str:
        return self.url


class FeedEntryState(models.TextChoices):
    PENDING = "pending"  # to fetch (again, after a failure)
    FETCHED = "fetched"  # its document was ingested (or refused, recorded)
    SKIPPED = "skipped"  # already old when the feed was first polled
    FAILED = "failed"  # given up after feed.MAX_ATTEMPTS tries


class JmaFeedEntry(models.Model):
    """One entry of the feed that named a 震度速報 or 震源・震度に関する情報: its document is
    fetched once, and an entry whose fetch failed is tried again at the next polls."""

    feed = models.ForeignKey(JmaFeed, on_delete=models.CASCADE, related_name="entries")
    entry_id = models.CharField(max_length=500, validators=[single_line])  # Atom <id>
    url = models.CharField(max_length=500, validators=[single_line])  # <link href>
    title = models.CharField(max_length=200, blank=True, validators=[single_line])
    updated = models.DateTimeField(null=True, blank=True)  # Atom <updated>
    seen_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=7, choices=FeedEntryState.choices, default=FeedEntryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    document = models.ForeignKey(
        JmaDocument, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["feed", "entry_id"], name="one_row_per_feed_entry")]
        indexes = [models.Index(fields=["feed", "state"])]

    def __str__(self) -> str:
        return self.entry_id

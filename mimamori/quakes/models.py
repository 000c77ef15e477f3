"""What the quakes app keeps: every JMA document it was given and the state of the Atom feed it
polls (part B); each municipality's earthquake settings and the alerts reports raised (part C)."""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mimamori import text
from mimamori.quakes import jma
from mimamori.registry.answers import SAFETY, answer_choices
from mimamori.registry.models import Municipality
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


# --- earthquake alerts (part C) ---

# JMA's codes: a city (市町村) has 7 digits, its 2-digit prefecture first (岩見沢市 0121000); an
# earthquake area (地震情報／細分区域, e.g. 石狩地方南部) has 3.
CITY_CODE = re.compile(r"[0-9]{7}")
AREA_CODE = re.compile(r"[0-9]{3}")
CODES_MAX = 50
HOLD_SECONDS_MAX = 600  # ten minutes: longer and an automatic alert is no longer early

# The template's fill-ins (alerts.fill): the places that reached the threshold, the strongest
# intensity among them, when the earthquake happened, and where (VXSE53 only).
PLACEHOLDERS = ("{場所}", "{震度}", "{発生時刻}", "{震源}")
DEFAULT_SUBJECT = "【安否確認】{場所}で震度{震度}の地震がありました"
DEFAULT_BODY = (
    "{発生時刻}ごろ、{場所}で震度{震度}の地震がありました。\n"
    "お子さまとご家族の安否を、下のリンクから回答してください。\n"
    "回答は、お子さまごとに何度でも変更できます。\n"
    "学校からの今後の連絡は、このメールでお知らせします。"
)
SUBJECT_MAX = 120  # the broadcast's 150, less room for long place names
BODY_MAX = 2000


def intensity_label(intensity: str) -> str:
    """震度 as people write it: 5- is 5弱, 5+ is 5強."""
    return intensity.replace("-", "弱").replace("+", "強")


THRESHOLD_CHOICES = [(value, f"震度{intensity_label(value)}") for value in jma.INTENSITIES]


@deconstructible
class CodesValidator:
    """A list of JMA codes of one shape: distinct, digits only, at most CODES_MAX."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, value: object) -> None:
        if (message := codes_problem(value, self.kind)) is not None:
            raise ValidationError(message, code="codes")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodesValidator) and other.kind == self.kind


def codes_problem(value: object, kind: str) -> str | None:
    """What is wrong with a list of city ("city") or area ("area") codes, in the user's
    language, or None."""
    pattern = CITY_CODE if kind == "city" else AREA_CODE
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        return _("Give the codes as a list of texts.")
    if len(value) > CODES_MAX:
        return _("At most %(max)d codes.") % {"max": CODES_MAX}
    for code in value:
        if not pattern.fullmatch(code):
            if kind == "city":
                return _(
                    "%(code)s is not a city code: JMA's city codes have 7 digits (岩見沢市 is 0121000)."
                ) % {"code": code[:20]}
            return _("%(code)s is not an area code: JMA's earthquake area codes have 3 digits.") % {
                "code": code[:20]
            }
    if len(set(value)) != len(value):
        return _("A code is given twice.")
    return None


def template_problem(value: str) -> str | None:
    """A placeholder the template does not know ({場所} {震度} {発生時刻} {震源}), or None."""
    for found in re.findall(r"\{[^{}]*\}", value):
        if found not in PLACEHOLDERS:
            return _("%(found)s is not a placeholder. Use %(known)s.") % {
                "found": found[:20],
                "known": " ".join(PLACEHOLDERS),
            }
    return None


def _placeholders(value: str) -> None:
    if (message := template_problem(value)) is not None:
        raise ValidationError(message, code="placeholder")


def _safety() -> list[str]:
    return list(SAFETY)


class EarthquakeSettings(models.Model):
    """How a municipality wants to be alerted when the ground shakes (B10). Empty city codes:
    off. A municipality without a row has the defaults, and is off."""

    municipality = models.OneToOneField(
        Municipality, on_delete=models.CASCADE, related_name="earthquake", primary_key=True
    )
    city_codes = models.JSONField(
        gettext_lazy("city codes"),
        default=list,
        blank=True,
        validators=[CodesValidator("city")],
        help_text=gettext_lazy("JMA's 7-digit city codes, e.g. 0121000 for 岩見沢市. None: off."),
    )
    # 震度速報 (VXSE51) names areas only, about two minutes before the cities arrive in a
    # 震源・震度に関する情報 (VXSE53). An area's intensity is that of its strongest station, so an
    # area reaching the threshold may mean a neighbouring city shook, not this one: opt in.
    area_codes = models.JSONField(
        gettext_lazy("area codes"),
        default=list,
        blank=True,
        validators=[CodesValidator("area")],
        help_text=gettext_lazy(
            "JMA's 3-digit earthquake areas whose intensity also counts (震度速報 names areas only)."
        ),
    )
    threshold = models.CharField(
        gettext_lazy("threshold"), max_length=2, choices=THRESHOLD_CHOICES, default="5-"
    )
    hold_seconds = models.PositiveIntegerField(
        gettext_lazy("hold (seconds)"),
        default=0,
        validators=[MaxValueValidator(HOLD_SECONDS_MAX)],
        help_text=gettext_lazy("How long staff may cancel before it is sent. 0: at once."),
    )
    subject = models.CharField(
        gettext_lazy("subject"),
        max_length=SUBJECT_MAX,
        default=DEFAULT_SUBJECT,
        validators=[text.single_line, _placeholders],
    )
    body = models.TextField(
        gettext_lazy("message"),
        max_length=BODY_MAX,
        default=DEFAULT_BODY,
        validators=[text.multi_line, _placeholders],
    )
    answers = models.JSONField(gettext_lazy("answer choices"), default=_safety, validators=[answer_choices])
    tell_municipality_staff = models.BooleanField(gettext_lazy("tell the municipality's staff"), default=True)
    tell_school_staff = models.BooleanField(gettext_lazy("tell the schools' staff"), default=False)
    tell_support_desk = models.BooleanField(gettext_lazy("tell the support desk address"), default=True)
    tell_centre = models.BooleanField(gettext_lazy("tell the support centre's staff"), default=False)

    class Meta:
        verbose_name = gettext_lazy("earthquake settings")

    def __str__(self) -> str:
        return f"{self.municipality} ({','.join(self.city_codes) or '-'})"

    @property
    def enabled(self) -> bool:
        return bool(self.city_codes)


class AlertStatus(models.TextChoices):
    HELD = "held", gettext_lazy("Held, to be sent")
    SENT = "sent", gettext_lazy("Sent")
    CANCELLED = "cancelled", gettext_lazy("Cancelled")
    DRILL = "drill", gettext_lazy("Drill (staff only)")
    # Nobody of the municipality receives broadcasts: nothing could be sent.
    UNSENT = "unsent", gettext_lazy("Not sent: nobody to send to")


class QuakeAlert(models.Model):
    """One earthquake (EventID) that reached a municipality's threshold, and what became of it.

    A drill (訓練/試験 documents, or started by hand) has ``drill`` set and no broadcast; staff
    were mailed what guardians would have got. The report fields are the latest report's; the
    first one's are kept in ``history`` with the rest.
    """

    municipality = models.ForeignKey(Municipality, on_delete=models.PROTECT, related_name="quake_alerts")
    event_id = models.CharField(max_length=64, validators=[text.single_line])
    drill = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=AlertStatus.choices)
    # The latest report on this earthquake (Kind, Status, InfoType, Serial, when JMA wrote it).
    kind = models.CharField(max_length=8, validators=[text.single_line])
    report_status = models.CharField(max_length=4, validators=[text.single_line])
    info_type = models.CharField(max_length=4, validators=[text.single_line])
    serial = models.PositiveIntegerField()
    reported_at = models.DateTimeField()
    headline = models.TextField(blank=True, validators=[text.multi_line])
    origin_time = models.DateTimeField(null=True, blank=True)
    hypocentre = models.CharField(max_length=64, blank=True, validators=[text.single_line])
    magnitude = models.CharField(max_length=16, blank=True, validators=[text.single_line])
    # The strongest intensity reached in this municipality's places, over every report.
    max_intensity = models.CharField(max_length=2, validators=[text.single_line])
    # This municipality's places that reached the threshold: [{code, name, intensity, unreported}].
    places = models.JSONField(default=list)
    # One entry per report received: {kind, status, info_type, serial, max_intensity, at}.
    history = models.JSONField(default=list)
    hold_until = models.DateTimeField(null=True, blank=True)
    broadcast = models.ForeignKey(
        "broadcasts.Broadcast", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    started_by = models.ForeignKey(  # a drill started by hand
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One alert per municipality and earthquake: a later report updates it, never sends.
            models.UniqueConstraint(fields=["municipality", "event_id", "drill"], name="one_alert_per_event"),
        ]
        indexes = [
            models.Index(fields=["hold_until"], name="held_quake_alert_idx", condition=Q(status="held")),
        ]

    def __str__(self) -> str:
        return f"{self.municipality} {self.event_id}"

    @property
    def max_intensity_label(self) -> str:
        return intensity_label(self.max_intensity)

    @property
    def is_held(self) -> bool:
        return self.status == AlertStatus.HELD

"""What the gates app keeps (B6, B11).

- GateReader: an IC-tag reader at one school's gate, with its own revocable token.
- GatePass: one event a reader posted, recorded once per (reader, event id) whatever its age;
  ``outcome`` says what came of it (mailed, too old to mail, a repeat read, an unknown tag).
- GateDayCount: passes per school, day and direction; kept when the passes are erased.
- GatePreference: the address slots a guardian chose for gate mails (all four by default).
- Absence: a guardian's 欠席連絡 (absent or late) for one child and one date.
- SchoolGateSettings / MunicipalityGateSettings: the attendance check's time per school, and
  whether guardians of a missing child are told, per municipality.
- SchoolDay: an entry of a school's calendar that overrides the default (weekdays that are not
  national holidays are school days).
- AttendanceCheck: the exception list of one school and one date, made once at the school's
  time; MissingChild its rows.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mimamori.registry.models import SLOTS, Municipality, Registrant, School
from mimamori.text import multi_line, single_line

TOKEN_PREFIX = "mgr_"  # noqa: S105 (not a secret) mimamori gate reader: tells a reader token from other secrets in a log


def new_reader_token() -> tuple[str, str]:
    """A fresh reader token and its digest (only the digest is kept; the token is shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, reader_token_digest(token)


def reader_token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class GateReader(models.Model):
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="gate_readers")
    name = models.CharField(_("name"), max_length=64, validators=[single_line])
    place = models.CharField(_("place"), max_length=64, blank=True, validators=[single_line])
    token_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)
    last_posted_at = models.DateTimeField(_("last posted"), null=True, blank=True)

    class Meta:
        ordering = ["school", "name", "pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Direction(models.TextChoices):
    IN = "in", _("arrival")  # 登校
    OUT = "out", _("departure")  # 下校


class PassOutcome(models.TextChoices):
    MAILED = "mailed", _("mailed")
    OLD = "old", _("recorded, too old to mail")
    REPEAT = "repeat", _("repeat read")  # the same tag and direction within the repeat window
    UNKNOWN = "unknown", _("unknown tag")
    NO_ADDRESS = "no_address", _("no address to mail")


class GatePass(models.Model):
    reader = models.ForeignKey(GateReader, on_delete=models.CASCADE, related_name="passes")
    event_id = models.CharField(max_length=64, validators=[single_line])
    tag = models.CharField(max_length=64, validators=[single_line])
    # None for a tag no child of the reader's school carries (reported to staff).
    registrant = models.ForeignKey(
        Registrant, on_delete=models.CASCADE, null=True, blank=True, related_name="gate_passes"
    )
    direction = models.CharField(max_length=3, choices=Direction.choices)
    at = models.DateTimeField()  # when the child passed, by the reader's clock
    recorded_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=PassOutcome.choices)
    mails = models.PositiveSmallIntegerField(default=0)  # gate mails posted for this pass

    class Meta:
        ordering = ["-at", "-pk"]
        constraints = [
            # A reader posting its backlog again changes nothing (idempotent per reader and id).
            models.UniqueConstraint(fields=["reader", "event_id"], name="one_pass_per_reader_event"),
        ]
        indexes = [
            models.Index(fields=["registrant", "at"]),
            models.Index(fields=["recorded_at"]),  # retention
            models.Index(fields=["tag"], name="gate_unknown_tag_idx", condition=Q(registrant__isnull=True)),
        ]


class GateDayCount(models.Model):
    """Passes per school, day (local date of ``at``) and direction: what is left when the passes
    themselves are erased after MIMAMORI_GATE_RETENTION_DAYS."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    direction = models.CharField(max_length=3, choices=Direction.choices)
    passes = models.PositiveIntegerField(default=0)
    mails = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["school", "day", "direction"], name="one_gate_count_per_day"),
        ]


def all_slots() -> list[int]:
    return list(SLOTS)


class GatePreference(models.Model):
    """The slots a child's gate mails go to, chosen on the portal's オプション; a child without a
    row gets all four (this is what slots 3 and 4 are for)."""

    registrant = models.OneToOneField(Registrant, on_delete=models.CASCADE, related_name="gate_preference")
    slots = models.JSONField(default=all_slots)
    updated_at = models.DateTimeField(auto_now=True)


class AbsenceKind(models.TextChoices):
    ABSENT = "absent", _("absent")  # 欠席
    LATE = "late", _("late")  # 遅刻


class Absence(models.Model):
    """A 欠席連絡: the guardian says the child will be absent, or late, on ``day``."""

    registrant = models.ForeignKey(Registrant, on_delete=models.CASCADE, related_name="absences")
    day = models.DateField(_("date"))
    kind = models.CharField(_("kind"), max_length=8, choices=AbsenceKind.choices)
    reason = models.CharField(_("reason"), max_length=200, validators=[multi_line])
    filed_at = models.DateTimeField(default=timezone.now)
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["day", "registrant"]
        constraints = [
            models.UniqueConstraint(
                fields=["registrant", "day"],
                name="one_absence_per_day",
                condition=Q(withdrawn_at__isnull=True),
            ),
        ]
        indexes = [models.Index(fields=["day", "registrant"])]


class SchoolGateSettings(models.Model):
    school = models.OneToOneField(School, on_delete=models.CASCADE, related_name="gate_settings")
    # When the exception list is made on school days (e.g. 08:30, local time); None: never.
    check_time = models.TimeField(_("attendance check time"), null=True, blank=True)


class MunicipalityGateSettings(models.Model):
    municipality = models.OneToOneField(Municipality, on_delete=models.CASCADE, related_name="gate_settings")
    # Tell a missing child's guardians 「まだ登校が確認できていません」 once.
    tell_guardians = models.BooleanField(_("tell guardians of a child not yet arrived"), default=False)


class SchoolDay(models.Model):
    """One date of a school's calendar that differs from the default: a closed weekday (臨時休校,
    開校記念日) or an open Saturday (土曜授業)."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="calendar")
    day = models.DateField(_("date"))
    open = models.BooleanField(_("school day"))
    note = models.CharField(_("note"), max_length=64, blank=True, validators=[single_line])

    class Meta:
        ordering = ["school", "day"]
        constraints = [models.UniqueConstraint(fields=["school", "day"], name="one_calendar_entry_per_day")]


class AttendanceCheck(models.Model):
    """The exception list of one school for one date, made once at the school's check time."""

    school = models.ForeignKey(School, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    made_at = models.DateTimeField(default=timezone.now)
    missing = models.PositiveIntegerField(default=0)
    guardians_told = models.PositiveIntegerField(default=0)  # mails posted to guardians

    class Meta:
        ordering = ["-day", "school"]
        constraints = [models.UniqueConstraint(fields=["school", "day"], name="one_attendance_check_per_day")]


class MissingChild(models.Model):
    attendance_check = models.ForeignKey(AttendanceCheck, on_delete=models.CASCADE, related_name="children")
    registrant = models.ForeignKey(Registrant, on_delete=models.CASCADE, related_name="+")
    # Set when a pass or a 欠席連絡 arrived after the list was made (the list keeps the row).
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["attendance_check", "registrant"], name="one_missing_row_per_child"
            )
        ]

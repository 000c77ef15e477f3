"""A broadcast, and one delivery per address it goes to.

The database is the truth: a delivery row's status says what has happened to that mail, and
the task queue only carries (broadcast, chunk) numbers that point at rows.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.registry.answers import MAX_CHOICES, answer_choices
from mimamori.registry.models import Municipality, Registrant, School

SUBJECT_MAX = 150
BODY_MAX = 10_000


class BroadcastStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    # To be sent at send_at by the sweep (P7); cancelled: a scheduled one called off before then.
    SCHEDULED = "scheduled", _("Scheduled")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    CANCELLED = "cancelled", _("Cancelled")


class BroadcastKind(models.TextChoices):
    ALERT = "alert", _("Broadcast")
    # A maintenance notice (mimamori/maintenance): every address of every active registrant in
    # scope, whatever the broadcast option and the municipality's broadcast slots (S9).
    MAINTENANCE = "maintenance", _("Maintenance notice")


class Broadcast(models.Model):
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="broadcasts"
    )
    created_at = models.DateTimeField(default=timezone.now)
    subject = models.CharField(_("subject"), max_length=SUBJECT_MAX, validators=[text.single_line])
    body = models.TextField(_("body"), max_length=BODY_MAX, validators=[text.multi_line])
    urgent = models.BooleanField(_("urgent"), default=False)
    request_confirmation = models.BooleanField(_("request read confirmation"), default=False)
    # Answer choices (B1, registry/answers.py): [] = a bare read confirmation. A broadcast with
    # choices always requests confirmation (its links carry the answer); answering is confirming.
    answers = models.JSONField(_("answer choices"), default=list, blank=True, validators=[answer_choices])
    # When staff closed answering (None: open until the links expire); a later answer is refused.
    answers_closed_at = models.DateTimeField(_("answers closed at"), null=True, blank=True)
    kind = models.CharField(
        _("kind"), max_length=16, choices=BroadcastKind.choices, default=BroadcastKind.ALERT
    )

    # Scope (S1, P1): the schools named, else every school of the municipalities named;
    # then, when `grade_classes` is empty, only the grades and classes named, if any (grades ×
    # classes); when `grade_classes` names classes of a grade ([grade, class] pairs, classes folded
    # with registry.models.class_key), the whole grades named plus those classes, and
    # `classes` is empty (targeting.resolve_scope).
    municipalities = models.ManyToManyField(Municipality, blank=True, related_name="+")
    schools = models.ManyToManyField(School, blank=True, related_name="+")
    grades = models.JSONField(_("grades"), default=list, blank=True)
    classes = models.JSONField(_("classes"), default=list, blank=True)
    grade_classes = models.JSONField(_("classes of a grade"), default=list, blank=True)

    status = models.CharField(
        _("status"), max_length=16, choices=BroadcastStatus.choices, default=BroadcastStatus.DRAFT
    )
    send_requested_at = models.DateTimeField(null=True, blank=True)
    # When a scheduled broadcast is to leave (P7); kept after it left or was cancelled.
    send_at = models.DateTimeField(_("scheduled send time"), null=True, blank=True)
    fan_out_queued_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Written once by the fan-out, in the same transaction as the deliveries.
    registrant_count = models.PositiveIntegerField(default=0)
    message_count = models.PositiveIntegerField(default=0)
    # Addresses of the audience that got no mail because they are suppressed (P5).
    suppressed_count = models.PositiveIntegerField(default=0)
    # Reminders to the unconfirmed (P3, receipts/reminders.py): automatic ones this many
    # minutes after sending, and how many reminders (automatic or by hand) went out so far.
    reminder_minutes = models.JSONField(_("automatic reminders (minutes after sending)"), default=list)
    reminders_sent = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = _("broadcast")
        verbose_name_plural = _("broadcasts")
        indexes = [
            models.Index(fields=["status", "send_requested_at"]),
            # The sweep's look for scheduled broadcasts that are due.
            models.Index(fields=["send_at"], name="scheduled_broadcast_idx", condition=Q(status="scheduled")),
        ]

    def __str__(self) -> str:
        return self.subject

    @property
    def is_draft(self) -> bool:
        return self.status == BroadcastStatus.DRAFT

    @property
    def is_scheduled(self) -> bool:
        return self.status == BroadcastStatus.SCHEDULED

    @property
    def asks_answers(self) -> bool:
        return bool(self.answers)


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    SENDING = "sending", _("Sending")
    DEFERRED = "deferred", _("Retrying")
    ACCEPTED = "accepted", _("Sent")
    FAILED = "failed", _("Failed")


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.DEFERRED)
OPEN = Q(status__in=[status.value for status in OPEN_STATUSES])


class Delivery(models.Model):
    """One mail of a broadcast to one address, naming every child it is sent for (B5).

    A row is written once and updated twice (claimed, then its outcome) at the rate mail
    leaves, and each update of an indexed column writes a new entry in every index but those
    whose condition the row no longer meets. So the indexes are few, and those for the work
    still to do hold open rows only: an accepted mail is in three (docs/performance.md).
    """

    # Both found through one_delivery_per_address (broadcast first) or not at all: a school
    # with mail is never deleted (PROTECT), and the rare check may scan.
    broadcast = models.ForeignKey(
        Broadcast, on_delete=models.CASCADE, related_name="deliveries", db_index=False
    )
    chunk = models.PositiveIntegerField()
    email = models.CharField(max_length=254)
    school = models.ForeignKey(  # the sender (S2)
        School, on_delete=models.PROTECT, related_name="+", db_index=False
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the row is (or was) due: set when its chunk is queued or a retry is planned. An open
    # row long past it has lost its task, and the sweep queues the chunk again.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # Which delivery task holds the row, and since when (renewed while it works): a crashed
    # worker's rows are handed back once the lease runs out.
    claim = models.UUIDField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    reply = models.CharField(max_length=500, blank=True)  # the SMTP server's last word
    # The read confirmation's opaque token, one per mail (receipts/confirming.py); NULL, not "",
    # where there is none, so that the unique constraint lets any number of rows go without.
    confirmation_token = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    # 0 for the first sending; n while (and after) the row is re-sent by the nth reminder,
    # whose mail says so in its subject.
    round = models.PositiveSmallIntegerField(default=0, db_default=0)  # db_default: the fan-out INSERTs

    class Meta:
        verbose_name = _("delivery")
        verbose_name_plural = _("deliveries")
        constraints = [
            # One mail per address per broadcast (B5), whatever a retried fan-out does.
            models.UniqueConstraint("broadcast", Lower("email"), name="one_delivery_per_address"),
            # A constraint rather than unique=True, which would add a second, LIKE-able index.
            models.UniqueConstraint(fields=["confirmation_token"], name="one_delivery_per_token"),
        ]
        indexes = [
            # A chunk's work (claims, retries, "is anything left?"), per broadcast.
            models.Index(fields=["broadcast", "chunk"], name="open_delivery_chunk_idx", condition=OPEN),
            # The sweep: leases run out, mails long overdue.
            models.Index(fields=["status", "next_attempt_at"], name="open_delivery_idx", condition=OPEN),
            models.Index(fields=["broadcast"], name="failed_delivery_idx", condition=Q(status="failed")),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"

    @property
    def message_id(self) -> str:
        return self.message_id_of(self.pk, self.round, self.school.municipality.mail_domain)

    @staticmethod
    def message_id_of(delivery_id: int, round_: int, domain: str) -> str:
        """The Message-ID header: the same on every attempt of one mail, so a copy sent twice
        after a crash carries the same ID and clients and relays drop the repeat; new for each
        reminder, which is a new mail (Gmail drops a 【再送】 under an ID it has seen). Keyed with
        SECRET_KEY, so one ID tells nothing of the next."""
        key = _message_id_key(settings.SECRET_KEY)
        digest = hmac.new(key, f"{delivery_id}.{round_}".encode(), hashlib.sha256).digest()
        return f"<{base64.b32encode(digest[:15]).decode().lower()}@{domain}>"


@functools.cache
def _message_id_key(secret: str) -> bytes:
    return hashlib.sha256(b"mimamori message-id\0" + secret.encode()).digest()


class AudienceGroup(models.Model):
    """The registrants of one school, grade and class a broadcast reached, as they were when it
    was sent, how many of them have confirmed (S15) and, where the broadcast asks an answer
    (B1), how many chose each answer. Statistics read these rows; a confirmation adds one to its
    group, an answer moves its group's counters in the same UPDATE, so no page ever counts
    deliveries or receipts."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="groups")
    school = models.ForeignKey(School, on_delete=models.PROTECT, related_name="+")
    grade = models.PositiveSmallIntegerField()
    class_name = models.CharField(max_length=16)
    registrants = models.PositiveIntegerField()
    confirmed = models.PositiveIntegerField(default=0)
    # Registrants whose answer now is choice 0 … 5 (registry.answers.MAX_CHOICES): columns of
    # this row rather than a row per choice, so that an answer writes the same two rows as a
    # confirmation, its receipt and this one (docs/performance.md, "Answer storm").
    answer_0 = models.PositiveIntegerField(default=0)
    answer_1 = models.PositiveIntegerField(default=0)
    answer_2 = models.PositiveIntegerField(default=0)
    answer_3 = models.PositiveIntegerField(default=0)
    answer_4 = models.PositiveIntegerField(default=0)
    answer_5 = models.PositiveIntegerField(default=0)

    ANSWER_FIELDS = tuple(f"answer_{index}" for index in range(MAX_CHOICES))

    class Meta:
        ordering = ["school", "grade", "class_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["broadcast", "school", "grade", "class_name"], name="one_group_per_class"
            ),
        ]

    def answer_counts(self) -> dict[int, int]:
        """{choice index: registrants} for the choices somebody of this group chose."""
        return answer_counts(getattr(self, name) for name in self.ANSWER_FIELDS)


def answer_counts(columns: Iterable[int | None]) -> dict[int, int]:
    """The answer_0 … answer_5 values (of a row, or their sums) as {choice index: registrants},
    leaving out the choices nobody chose."""
    return {index: count for index, count in enumerate(columns) if count}


class Recipient(models.Model):
    """A registrant a delivery is sent for, and the slot the address sits in."""

    # Found through the indexes below, which start with them.
    broadcast = models.ForeignKey(
        Broadcast, on_delete=models.CASCADE, related_name="recipients", db_index=False
    )
    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="recipients", db_index=False
    )
    registrant = models.ForeignKey(Registrant, on_delete=models.PROTECT, related_name="+")
    slot = models.PositiveSmallIntegerField()
    group = models.ForeignKey(AudienceGroup, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "registrant"], name="one_recipient_per_delivery"),
        ]
        indexes = [models.Index(fields=["broadcast", "registrant"])]

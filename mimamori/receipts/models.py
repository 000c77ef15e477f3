"""A receipt: one registrant of one broadcast confirmed, once, through one of its mails, and,
where the broadcast offers answer choices (B1), the answer given for that child."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery
from mimamori.registry.models import Registrant


class Receipt(models.Model):
    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="receipts")
    registrant = models.ForeignKey(Registrant, on_delete=models.PROTECT, related_name="+")
    # The mail whose link was pressed (slot 1 or 2, or a sibling's shared address).
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="+")
    confirmed_at = models.DateTimeField(default=timezone.now)
    # The index of the chosen answer in Broadcast.answers; None for a bare confirmation. A later
    # answer replaces it until answering closes; confirmed_at stays the first.
    answer = models.PositiveSmallIntegerField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The first confirmation counts; the database keeps it the only one (S5).
            models.UniqueConstraint(fields=["broadcast", "registrant"], name="one_receipt_per_registrant"),
        ]
        indexes = [models.Index(fields=["broadcast", "confirmed_at"])]


class Reminder(models.Model):
    """One reminder to the unconfirmed of a broadcast (P3), by hand or automatic."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="reminders")
    number = models.PositiveSmallIntegerField()  # the Delivery.round its mails carry
    sent_at = models.DateTimeField(default=timezone.now)
    # None: sent automatically, at one of the broadcast's reminder_minutes.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    messages = models.PositiveIntegerField()

    class Meta:
        ordering = ["broadcast", "number"]
        constraints = [
            models.UniqueConstraint(fields=["broadcast", "number"], name="one_reminder_per_number"),
        ]


class AnswerCount(models.Model):
    """How many registrants of one audience group (school, grade, class) chose one answer: the
    counter the tally reads, as AudienceGroup.confirmed is for confirmations. Kept exact by
    receipts/answering.py, which moves a registrant from one counter to another when the answer
    changes; a row exists once somebody of the group chose that answer."""

    group = models.ForeignKey(AudienceGroup, on_delete=models.CASCADE, related_name="+")
    answer = models.PositiveSmallIntegerField()
    registrants = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "answer"], name="one_count_per_group_answer"),
        ]

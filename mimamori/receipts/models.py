"""A receipt: one registrant of one broadcast confirmed, once, through one of its mails, and,
where the broadcast offers answer choices (B1), the answer given for that child."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from mimamori.broadcasts.models import Broadcast, Delivery
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
    # The answer the current one replaced (None while the first stands). Written by the
    # receipt's own upsert from the locked row, it tells the counters which one to take a
    # registrant from without reading the receipt before (receipts/answering.py).
    replaced = models.PositiveSmallIntegerField(null=True, blank=True)

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

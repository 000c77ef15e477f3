"""Mail other than broadcasts, on its way: one row per mail, from queued to its outcome.

Broadcast mail has its own table (broadcasts.Delivery), built for hundreds of thousands of rows
a minute; everything else (the 登録完了メール, the support desk's mails, notices to guardians)
goes through this one, with the same rules: 4xx retried with backoff, 5xx failed with the
server's words, and an outcome staff can see.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class OutgoingStatus(models.TextChoices):
    PENDING = "pending", _("Waiting")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    DEFERRED = "deferred", _("Waiting to retry")
    FAILED = "failed", _("Failed")


class OutgoingMail(models.Model):
    # What the mail is and what it is about, as its app names it (e.g. "registration_complete",
    # "registrant 12"), and the municipality it belongs to, so its staff see it.
    kind = models.CharField(max_length=32)
    target = models.CharField(max_length=200, blank=True)
    municipality = models.ForeignKey(
        "registry.Municipality", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    to = models.CharField(max_length=254)
    envelope_domain = models.CharField(max_length=253)  # where its bounces come back (mail/verp.py)
    # The bytes offered to the relay; emptied once the mail is done, so no body outlives its need.
    message = models.BinaryField(default=b"")
    status = models.CharField(max_length=16, choices=OutgoingStatus.choices, default=OutgoingStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    reply = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["target", "kind"], name="outgoing_target_idx"),
            # The sweep looks only at mails still on their way.
            models.Index(
                fields=["next_attempt_at"],
                name="open_outgoing_idx",
                condition=Q(status__in=["pending", "sending", "deferred"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} ({self.status})"

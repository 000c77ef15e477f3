"""Maintenance windows of the guardian site, and the notices sent about them (S9)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from mimamori import text
from mimamori.broadcasts.models import Broadcast
from mimamori.registry.models import Municipality

MESSAGE_MAX = 1000


class MaintenanceWindow(models.Model):
    starts_at = models.DateTimeField(_("starts at"))
    ends_at = models.DateTimeField(_("ends at"))
    message = models.TextField(
        _("message to guardians"), max_length=MESSAGE_MAX, validators=[text.multi_line]
    )
    # None named means every municipality, including ones added later.
    municipalities = models.ManyToManyField(Municipality, blank=True, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Every change (moved, municipalities changed, cancelled) makes a new version; each
    # municipality is told about a version at most once (MaintenanceNotice).
    version = models.PositiveIntegerField(default=1)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at", "-pk"]
        verbose_name = _("maintenance window")
        verbose_name_plural = _("maintenance windows")
        # The guardian site and the sweep only ever look at windows not yet over.
        indexes = [models.Index(fields=["ends_at"])]

    def __str__(self) -> str:
        return f"{self.starts_at:%Y-%m-%d %H:%M} – {self.ends_at:%Y-%m-%d %H:%M}"

    @property
    def is_cancelled(self) -> bool:
        return self.cancelled_at is not None


class NoticeKind(models.TextChoices):
    NOTICE = "notice", pgettext_lazy("maintenance", "Notice")
    CHANGE = "change", _("Change notice")
    CANCELLATION = "cancellation", _("Cancellation notice")


class MaintenanceNotice(models.Model):
    """One municipality was told about one version of a window, by the broadcast named.

    Written in the transaction that queues the broadcast, so a notice exists exactly when
    its mails are on their way; the broadcast's deliveries then send each address once.
    """

    window = models.ForeignKey(MaintenanceWindow, on_delete=models.CASCADE, related_name="notices")
    municipality = models.ForeignKey(Municipality, on_delete=models.CASCADE, related_name="+")
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=NoticeKind.choices)
    # The times the notice announced, so a later move is noticed and told again.
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    broadcast = models.ForeignKey(Broadcast, on_delete=models.PROTECT, related_name="+")
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["window", "sent_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["window", "municipality", "version"], name="one_notice_per_version"
            ),
        ]

"""Inquiries to a municipality's support desk (サポート窓口), from the guardian site."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mimamori import text

MAX_NAME = 100
MAX_SUBJECT = 100
MAX_BODY = 4000
MAX_ANSWER = 4000


class InquiryStatus(models.TextChoices):
    OPEN = "open", _("Open")
    ANSWERED = "answered", _("Answered")


class Inquiry(models.Model):
    municipality = models.ForeignKey(
        "registry.Municipality", on_delete=models.PROTECT, related_name="inquiries"
    )
    # Set when a logged-in guardian asks; SET_NULL so erasing a registrant keeps the desk's record.
    registrant = models.ForeignKey(
        "registry.Registrant", on_delete=models.SET_NULL, null=True, blank=True, related_name="inquiries"
    )
    name = models.CharField(_("name"), max_length=MAX_NAME, validators=[text.single_line])
    reply_to = models.CharField(_("reply address"), max_length=254, blank=True, validators=[text.single_line])
    subject = models.CharField(_("subject"), max_length=MAX_SUBJECT, validators=[text.single_line])
    body = models.TextField(_("message"), max_length=MAX_BODY, validators=[text.multi_line])
    status = models.CharField(
        _("status"), max_length=16, choices=InquiryStatus.choices, default=InquiryStatus.OPEN
    )
    created_at = models.DateTimeField(_("received"), default=timezone.now)
    ip_address = models.GenericIPAddressField(_("from address"), null=True, blank=True)
    copied_at = models.DateTimeField(null=True, blank=True)
    # When the acknowledgement (受付番号) was queued to the guardian; None until then.
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    answered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    answered_at = models.DateTimeField(_("answered"), null=True, blank=True)
    answer = models.TextField(_("answer"), max_length=MAX_ANSWER, blank=True, validators=[text.multi_line])
    answer_mailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = _("inquiry")
        verbose_name_plural = _("inquiries")
        indexes = [
            models.Index(fields=["municipality", "status", "created_at"]),
            # The rate limit counts recent rows per address and per registrant.
            models.Index(fields=["ip_address", "created_at"]),
            models.Index(fields=["registrant", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.subject}"

    @property
    def reference(self) -> str:
        """受付番号: the number the guardian is given (thanks page, acknowledgement mail) and can
        quote on the telephone; the console shows it with the inquiry."""
        return f"Q{self.pk:06d}"

    @property
    def is_open(self) -> bool:
        return self.status == InquiryStatus.OPEN

    def answer_address(self) -> str:
        """Where the answer goes: the address given on the form, else the registrant's first."""
        if self.reply_to:
            return self.reply_to
        if self.registrant is None:
            return ""
        addresses = self.registrant.addresses_by_slot()
        return next((email for _slot, email in sorted(addresses.items()) if email), "")

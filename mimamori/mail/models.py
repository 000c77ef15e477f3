"""Mail other than broadcasts, on its way: one row per mail, from queued to its outcome.

Broadcast mail has its own table (broadcasts.Delivery), built for hundreds of thousands of rows
a minute; everything else (the 登録完了メール, the support desk's mails, notices to guardians)
goes through this one, with the same rules: 4xx retried with backoff, 5xx failed with the
server's words, and an outcome staff can see.
"""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mimamori import text


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


class Charset(models.TextChoices):
    UTF8 = "utf-8", "UTF-8"
    ISO2022JP = "iso-2022-jp", "ISO-2022-JP"


class CarrierProfile(models.Model):
    """How mail for one group of destination domains is handed to the relay (B3, B12).

    The limits hold across every worker process of the installation, whichever task engine runs
    them: sessions are leases in this database (CarrierLease), the rate a shared pace kept on
    this row (mail/carriers.py). The rest of the row is the group's state: a destination that
    keeps deferring or answering slowly is paused, with growing pauses, without delaying any
    other group. The group named ``default`` takes every domain no other group lists.
    """

    name = models.SlugField(_("name"), max_length=32, unique=True)
    label = models.CharField(_("label"), max_length=64, validators=[text.single_line])
    domains = models.JSONField(
        _("domains"), default=list, blank=True, help_text=_("Their subdomains belong to the group too.")
    )
    position = models.PositiveSmallIntegerField(default=0)
    sessions = models.PositiveSmallIntegerField(
        _("concurrent sessions"),
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(200)],
        help_text=_("SMTP sessions open at once for this group, across all workers."),
    )
    mails_per_session = models.PositiveSmallIntegerField(
        _("mails per session"),
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text=_("A session is closed and opened anew after this many mails."),
    )
    rate_per_minute = models.PositiveIntegerField(
        _("mails per minute"),
        default=0,
        validators=[MaxValueValidator(1_000_000)],
        help_text=_("0: as fast as the sessions go."),
    )
    charset = models.CharField(
        _("character set"), max_length=16, choices=Charset.choices, default=Charset.UTF8
    )
    # State, written by the workers.
    trouble = models.PositiveIntegerField(default=0)  # deferrals or slow replies in a row
    pauses = models.PositiveIntegerField(default=0)  # pauses in a row, for the next one's length
    paused_until = models.DateTimeField(null=True, blank=True)
    last_trouble = models.CharField(max_length=500, blank=True)
    pace = models.FloatField(default=0.0)  # when the next mail may start (Unix time), for the rate

    class Meta:
        ordering = ["position", "name"]
        verbose_name = _("carrier profile")
        verbose_name_plural = _("carrier profiles")

    def __str__(self) -> str:
        return self.label

    def save(self, *args: object, **kwargs: object) -> None:
        super().save(*args, **kwargs)  # type: ignore[arg-type]
        # One lease row per session the group may open (mail/carriers.py).
        CarrierLease.objects.bulk_create(
            [CarrierLease(profile=self, slot=slot) for slot in range(self.sessions)], ignore_conflicts=True
        )


class CarrierLease(models.Model):
    """One of a carrier group's SMTP sessions, held by a delivery task while it sends.

    A holder renews its lease while it works; a lease whose holder died runs out and is free
    again (MIMAMORI_CARRIER_LEASE_SECONDS).
    """

    profile = models.ForeignKey(CarrierProfile, on_delete=models.CASCADE, related_name="leases")
    slot = models.PositiveSmallIntegerField()
    holder = models.UUIDField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["profile", "slot"], name="one_lease_per_slot")]


class DkimKey(models.Model):
    """A key that signs a mail domain's mail (DKIM, RFC 6376), made by `mimamori dkim-keygen`.

    Keyed by the mail domain (the ``d=`` of its signatures and the From domain of its mail), not
    by municipality: the mail app knows no app above it. The newest key of a domain signs
    (``retired_at`` empty); a key replaced by a newer one keeps its public half, so the console
    can say which records may still be needed while mail it signed is on its way, and drops its
    private half, which nothing needs any more. The private key is never shown anywhere.
    """

    domain = models.CharField(max_length=253)  # lower case
    selector = models.CharField(max_length=63)
    private_key = models.TextField(editable=False)  # PEM (PKCS #8); "" once retired
    public_key = models.TextField(editable=False)  # base64 DER SubjectPublicKeyInfo: the record's p=
    created_at = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["domain", "-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkim_selector_unique"),
            models.UniqueConstraint(
                fields=["domain"], condition=Q(retired_at__isnull=True), name="one_signing_dkim_key"
            ),
        ]

    def __str__(self) -> str:
        return self.record_name

    def __repr__(self) -> str:  # never the key
        return f"<DkimKey {self.record_name}>"

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record_value(self) -> str:
        return f"v=DKIM1; k=rsa; p={self.public_key}"

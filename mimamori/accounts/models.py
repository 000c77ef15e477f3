"""Who may sign in: staff (centre, municipality, school) and guardians (one per registrant)."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    CENTRE = "centre", _("Support centre")
    MUNICIPALITY = "municipality", _("Municipality")
    SCHOOL = "school", _("School")


class User(AbstractUser):
    """A login. Staff have a role and its scope; a guardian has neither and owns a registrant.

    A guardian's username is the registrant's login ID (see registry.Registrant.account).
    """

    role = models.CharField(_("role"), max_length=16, choices=Role.choices, blank=True)
    municipality = models.ForeignKey(
        "registry.Municipality", on_delete=models.PROTECT, null=True, blank=True, related_name="staff"
    )
    school = models.ForeignKey(
        "registry.School", on_delete=models.PROTECT, null=True, blank=True, related_name="staff"
    )

    class Meta:
        constraints = [
            # Each role carries exactly the scope it needs, so access checks never guess.
            models.CheckConstraint(
                name="staff_scope_matches_role",
                condition=(
                    Q(role="", municipality__isnull=True, school__isnull=True)
                    | Q(role="centre", municipality__isnull=True, school__isnull=True)
                    | Q(role="municipality", municipality__isnull=False, school__isnull=True)
                    | Q(role="school", municipality__isnull=True, school__isnull=False)
                ),
            )
        ]

    @property
    def is_console_user(self) -> bool:
        return self.is_active and self.role != ""

    @property
    def is_guardian(self) -> bool:
        return self.is_active and self.role == "" and hasattr(self, "registrant")


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def find_by_raw(self, raw: str) -> ApiToken | None:
        return self.select_related("user").filter(digest=_digest(raw), revoked_at__isnull=True).first()


class ApiToken(models.Model):
    """A bearer token for the REST API. Only its SHA-256 is stored; the token itself is shown once.

    A token has 256 bits of randomness, so an unsalted fast hash is enough: nothing can be
    guessed from the digest, and lookups stay a single indexed query.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters, to tell tokens apart.")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user: User) -> tuple[ApiToken, str]:
        raw = "mmr_" + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, digest=_digest(raw), prefix=raw[:8])
        return token, raw


class ClientEventKind(models.TextChoices):
    LOGIN_FAILED = "login_failed", _("Failed login")
    RESET_REQUESTED = "reset_requested", _("Password reset requested")


class ClientEvent(models.Model):
    """One failed login or password reset request, by client address, for the per-client
    throttle (accounts/throttle.py). Rows older than the longest window are pruned by the sweep.

    In the database rather than a per-process cache, so the count holds across gunicorn
    workers and machines.
    """

    kind = models.CharField(max_length=16, choices=ClientEventKind.choices)
    address = models.GenericIPAddressField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["kind", "address", "at"], name="client_event_address_idx"),
            models.Index(fields=["at"], name="client_event_at_idx"),
        ]


class PasswordReset(models.Model):
    """A one-time link to set a new password (accounts/recovery.py).

    The link carries 256 random bits and nothing else (no login ID, no user id); only its
    SHA-256 is stored. It works once, until ``expires_at``, and only while the password is the
    one it was issued against (``password_fingerprint``), so any later password change ends it.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="password_resets")
    digest = models.CharField(max_length=64, unique=True)
    password_fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "created_at"], name="password_reset_user_idx"),
            models.Index(fields=["expires_at"], name="password_reset_expiry_idx"),
        ]

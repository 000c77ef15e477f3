"""The way back in (P11): one-time password reset links, and unlocking a locked-out login.

A link is an opaque random token (256 bits, as the convention for links asks: no login ID or
user id inside, so a forwarded or logged URL names nobody). Only its SHA-256 is stored. It sets
a password once, before it expires, and only while the account's password is still the one
it was issued against: a later reset, first login or any other change ends every older link.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from axes.models import AccessAttempt
from axes.utils import reset as axes_reset
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mimamori.accounts.models import PasswordReset, User


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _fingerprint(user: User) -> str:
    return hashlib.sha256(user.password.encode()).hexdigest()


def issue_reset(user: User, lifetime: timedelta) -> str:
    """A new one-time link token for ``user``; the caller puts it into a URL and hands it on."""
    raw = secrets.token_urlsafe(32)
    PasswordReset.objects.create(
        user=user,
        digest=_digest(raw),
        password_fingerprint=_fingerprint(user),
        expires_at=timezone.now() + lifetime,
    )
    return raw


def resets_since(user: User, since: timedelta) -> int:
    """How many links ``user`` was given lately (the per-login limit on reset mails)."""
    return PasswordReset.objects.filter(user=user, created_at__gte=timezone.now() - since).count()


def find_reset(raw: str) -> PasswordReset | None:
    """The link's reset if it can still set a password, else None (unknown, used or expired)."""
    if not raw or len(raw) > 100:
        return None
    reset = PasswordReset.objects.select_related("user").filter(digest=_digest(raw)).first()
    if reset is None or not _usable(reset):
        return None
    return reset


def _usable(reset: PasswordReset) -> bool:
    return (
        reset.used_at is None
        and reset.expires_at > timezone.now()
        and reset.user.is_active
        and secrets.compare_digest(reset.password_fingerprint, _fingerprint(reset.user))
    )


def use_reset(raw: str, password: str) -> User | None:
    """Set ``password`` (validated by the caller) through the link; None if it no longer works.

    The row is locked and checked again, so two tabs holding one link cannot both use it. The
    login's lockout is lifted: whoever reads the mail is the owner.
    """
    with transaction.atomic():
        found = PasswordReset.objects.filter(digest=_digest(raw)).values_list("pk", flat=True).first()
        if found is None:
            return None
        reset = PasswordReset.objects.select_for_update().select_related("user").get(pk=found)
        if not _usable(reset):
            return None
        user = reset.user
        user.set_password(password)
        user.save(update_fields=["password"])
        reset.used_at = timezone.now()
        reset.save(update_fields=["used_at"])
    unlock(user.get_username())
    return user


def unlock(username: str) -> int:
    """Lift django-axes' lockout of ``username`` from every client address; returns how many
    (login ID, address) records were cleared."""
    return int(axes_reset(username=username) or 0)


def locked_attempts(usernames: Any) -> list[AccessAttempt]:
    """django-axes' records of ``usernames`` (a list or a query of them) that lock a login
    for a client address now, newest first."""
    since = timezone.now() - timedelta(hours=settings.AXES_COOLOFF_TIME)
    return list(
        AccessAttempt.objects.filter(
            username__in=usernames,
            failures_since_start__gte=settings.AXES_FAILURE_LIMIT,
            attempt_time__gte=since,
        ).order_by("-attempt_time")[:500]
    )


def is_locked(username: str) -> bool:
    return bool(locked_attempts([username]))

"""Bearer-token authentication for the REST API: staff only, one token per integration."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from mimamori.accounts.models import ApiToken, User

# Writing last_used_at on every call would turn each read into a write; a minute is precise
# enough to tell which tokens are still in use.
LAST_USED_PRECISION = timedelta(minutes=1)


class StaffToken(HttpBearer):
    """Accepts a live token whose user is active staff; anything else is 401."""

    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        found = ApiToken.objects.find_by_raw(token.strip())
        if found is None:
            return None
        user = found.user
        if not user.is_console_user:
            return None
        now = timezone.now()
        ApiToken.objects.filter(pk=found.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_PRECISION)
        ).update(last_used_at=now)
        # Views reach objects through the apps' access rules (registry.access, …): they read request.user.
        request.user = user
        return user


def staff_of(request: HttpRequest) -> User:
    """The staff member the request's token belongs to (set by StaffToken)."""
    user = getattr(request, "auth", None)
    assert isinstance(user, User)
    return user

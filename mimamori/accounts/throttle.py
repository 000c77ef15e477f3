"""The per-client throttle across login IDs (P11), beside django-axes' per-(login ID, client) lockout.

django-axes locks a login ID for one client address after a few failures, so a stranger can
no longer lock the owner out from elsewhere. That alone would let one client try five
passwords for every login ID; this throttle counts the failures of one client address across
all IDs (logins on every site and registration codes at 初回ログイン) and, past
MIMAMORI_CLIENT_FAILURE_LIMIT within MIMAMORI_CLIENT_FAILURE_WINDOW_MINUTES, refuses every
login from that address, also with a right password, until older failures leave the window.

The same table limits password reset requests per client address. Rows are in the database
so that every worker and machine sees the same counts; the sweep prunes them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils import timezone

from mimamori.accounts.models import ClientEvent, ClientEventKind, PasswordReset
from mimamori.audit.log import client_address

RESET_WINDOW = timedelta(hours=1)


def _failure_window() -> timedelta:
    return timedelta(minutes=settings.MIMAMORI_CLIENT_FAILURE_WINDOW_MINUTES)


def _count(kind: str, address: str | None, window: timedelta) -> int:
    return ClientEvent.objects.filter(kind=kind, address=address, at__gte=timezone.now() - window).count()


def client_throttled(request: HttpRequest | None) -> bool:
    """Whether logins from this request's client address are refused for now."""
    if request is None:
        return False
    failures = _count(ClientEventKind.LOGIN_FAILED, client_address(request), _failure_window())
    return failures >= settings.MIMAMORI_CLIENT_FAILURE_LIMIT


def mark_throttled(request: HttpRequest) -> None:
    """Let django-axes' middleware answer with the lockout page, which says why."""
    request.axes_locked_out = True  # type: ignore[attr-defined]
    request.mimamori_throttled = True  # type: ignore[attr-defined]


def login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """Counts every failed login (Django's signal, also sent for a wrong registration code)."""
    if request is None:
        return
    username = str((credentials or {}).get("username") or "")[:150]
    ClientEvent.objects.create(
        kind=ClientEventKind.LOGIN_FAILED, address=client_address(request), username=username
    )


def reset_request_allowed(request: HttpRequest) -> bool:
    """Counts a password reset request from this client; False past the hourly limit.

    Counted whether or not the login ID and address matched, so the answer tells nothing.
    """
    address = client_address(request)
    if _count(ClientEventKind.RESET_REQUESTED, address, RESET_WINDOW) >= settings.MIMAMORI_RESET_CLIENT_LIMIT:
        return False
    ClientEvent.objects.create(kind=ClientEventKind.RESET_REQUESTED, address=address)
    return True


class ClientThrottleBackend:
    """First in AUTHENTICATION_BACKENDS: refuses every authenticate() from a throttled client.

    Raising PermissionDenied stops authenticate() before any password is checked; Django then
    sends user_login_failed, so an address that keeps trying stays throttled. It has no
    get_user(): it logs nobody in, and Django's force_login picks the first backend with one.
    """

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        if request is not None and client_throttled(request):
            mark_throttled(request)
            raise PermissionDenied
        return None


def prune(now: datetime) -> int:
    """The sweep's step: forget client events past every window and reset links long dead."""
    horizon = now - max(_failure_window(), RESET_WINDOW)
    deleted, _ = ClientEvent.objects.filter(at__lt=horizon).delete()
    dead, _ = PasswordReset.objects.filter(expires_at__lt=now - timedelta(days=1)).delete()
    return deleted + dead


def connect() -> None:
    user_login_failed.connect(login_failed, dispatch_uid="mimamori.accounts.throttle.login_failed")

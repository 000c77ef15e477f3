"""Logins into the audit log: succeeded, failed (with the login ID tried) and locked out.

Connected in RegistryConfig.ready: each event is filed under the municipality the person
belongs to (a staff member's own, a guardian's child's), which the registry knows. Django sends
these signals for the staff console, the guardian portal, the guardian's first login and the
admin alike; ``site`` tells them apart.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest

from mimamori.audit.log import record
from mimamori.registry.models import Municipality, Registrant


def _site(request: HttpRequest | None) -> str:
    path = getattr(request, "path", "") or ""
    for prefix, site in (("/console/", "console"), ("/portal/", "portal"), ("/admin/", "admin")):
        if path.startswith(prefix):
            return site
    return "other"


def home_municipality(user: Any) -> Municipality | None:
    """Whose event this is: the staff member's municipality or the guardian's child's."""
    if user is None:
        return None
    if user.municipality_id is not None:
        return user.municipality
    if user.school_id is not None:
        return user.school.municipality
    registrant = Registrant.objects.filter(account=user).select_related("school__municipality").first()
    return registrant.school.municipality if registrant else None


def _known_user(username: str) -> Any:
    # A failed login against an existing account belongs to that account's municipality, so
    # its staff see attacks on their own people; an unknown name stays the centre's.
    if not username:
        return None
    return get_user_model().objects.filter(username=username).first()


def logged_in(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    record(
        "login.succeeded",
        actor=user,
        target=f"user {user.get_username()}",
        municipality=home_municipality(user),
        request=request,
        site=_site(request),
    )


def login_failed(
    sender: Any, credentials: dict[str, Any] | None = None, request: HttpRequest | None = None, **kwargs: Any
) -> None:
    username = str((credentials or {}).get("username") or "")[:150]
    record(
        "login.failed",
        actor_name=username,
        target=f"user {username}",
        municipality=home_municipality(_known_user(username)),
        request=request,
        site=_site(request),
    )


def locked_out(
    sender: Any, request: HttpRequest | None = None, username: str | None = None, **kwargs: Any
) -> None:
    name = (username or "")[:150]
    record(
        "login.locked_out",
        actor_name=name,
        target=f"user {name}",
        municipality=home_municipality(_known_user(name)),
        request=request,
        site=_site(request),
    )


def connect() -> None:
    user_logged_in.connect(logged_in, dispatch_uid="mimamori.registry.logged_in")
    user_login_failed.connect(login_failed, dispatch_uid="mimamori.registry.login_failed")
    user_locked_out.connect(locked_out, dispatch_uid="mimamori.registry.locked_out")

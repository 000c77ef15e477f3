"""record(): the one way to write the audit log.

The log sits below every app that writes to it and knows none of them: the caller names the
target (a short description such as "broadcast 12") and the municipality the event belongs to.
"""

from __future__ import annotations

import getpass
import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from mimamori.audit.models import AuditEvent

# The request being answered, so that verbs deep below a view (a reminder, an address
# change) record the client address without every signature carrying the request.
_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_request", default=None)


class RequestMiddleware:
    """Makes the current request known to record() for the length of the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            _current_request.reset(token)


def client_address(request: HttpRequest | None = None) -> str | None:
    """The address of the client that sent ``request`` (by default the current one).

    Without proxies (MIMAMORI_PROXY_COUNT=0) it is REMOTE_ADDR. Behind N trusted proxies, each
    appends the address it received the request from to X-Forwarded-For, so the client is the
    N-th entry from the right; anything further left was written by the client and is not
    believed. The login lockout, the per-client throttle and this log all use this address.
    """
    request = request or _current_request.get()
    if request is None:
        return None
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = settings.MIMAMORI_PROXY_COUNT
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return remote  # not through every proxy: the nearest peer is all that is known
    try:
        return str(ipaddress.ip_address(forwarded[-proxies]))
    except ValueError:
        return remote


def record(
    action: str,
    *,
    actor: Any = None,
    actor_name: str = "",
    target: str = "",
    municipality: Model | int | None = None,
    request: HttpRequest | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event. ``actor`` is a User (or None for the system); ``municipality`` a
    Municipality or its id (by default the actor's own); ``details`` is JSON."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    name = actor_name or (actor.get_username() if actor is not None else "")
    if municipality is None and actor is not None:
        municipality = getattr(actor, "municipality", None) or getattr(
            getattr(actor, "school", None), "municipality", None
        )
    municipality_id = municipality.pk if isinstance(municipality, Model) else municipality
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_name=name,
        target=target[:200],
        municipality_id=municipality_id,
        ip_address=client_address(request),
        details=details,
    )


def command_actor() -> str:
    """Who ran a management command: the operating-system login, as far as it is known."""
    try:
        who = getpass.getuser()
    except (OSError, KeyError):
        who = "?"
    return f"{who} (command)"[:150]

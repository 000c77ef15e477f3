"""record(): the one way to write the audit log."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from mimamori.audit.models import AuditEvent
from mimamori.registry.models import Municipality


def client_address(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    # Behind a reverse proxy, configure it to set REMOTE_ADDR (see docs/operations.md).
    return request.META.get("REMOTE_ADDR") or None


def record(
    action: str,
    *,
    actor: Any = None,
    actor_name: str = "",
    target: str = "",
    municipality: Municipality | int | None = None,
    request: HttpRequest | None = None,
    **details: Any,
) -> AuditEvent:
    """Append one event. ``actor`` is a User (or None for the system); ``details`` is JSON."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    name = actor_name or (actor.get_username() if actor is not None else "")
    if municipality is None and actor is not None:
        municipality = getattr(actor, "municipality", None) or getattr(
            getattr(actor, "school", None), "municipality", None
        )
    municipality_id = municipality.pk if isinstance(municipality, Municipality) else municipality
    return AuditEvent.objects.create(
        action=action,
        actor=actor,
        actor_name=name,
        target=target[:200],
        municipality_id=municipality_id,
        ip_address=client_address(request),
        details=details,
    )

"""During a maintenance window the guardian site answers 503 with a page saying when it ends.

Only the guardian self-service pages (the "portal" URL namespace) close. The confirmation
links (/c/<token>/), broadcast sending, the console and the API keep working. A request to the
portal costs one query on the windows' ends_at index; only while a window for some
municipalities (not all) is in force is the guardian's own municipality looked up as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone

from mimamori.maintenance.windows import applying, in_force
from mimamori.registry.models import Municipality, Registrant

# Logging out during maintenance does no harm and leaves a shared phone clean.
STILL_OPEN = {"logout"}


def clock() -> datetime:
    return timezone.now()


class MaintenanceMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.namespace != "portal" or match.url_name in STILL_OPEN:
            return None
        now = clock()
        windows = in_force(now)
        if not windows:
            return None
        municipality_id = None
        if any(w.municipality_id is not None for w in windows):
            municipality_id = _guardian_municipality(request)
        window = applying(windows, municipality_id)
        if window is None:
            return None
        municipality = Municipality.objects.filter(pk=municipality_id).first() if municipality_id else None
        response = HttpResponse(
            render_to_string(
                "maintenance/unavailable.html",
                {"ends_at": window.ends_at, "message": window.message, "municipality": municipality},
                request=request,
            ),
            status=503,
        )
        response["Retry-After"] = str(max(1, math.ceil((window.ends_at - now).total_seconds())))
        response["Cache-Control"] = "no-store"
        # A planned 503 is no server error: keep it out of django.request's error log.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response


def _guardian_municipality(request: HttpRequest) -> int | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return (
        Registrant.objects.filter(account_id=user.pk)
        .values_list("school__municipality_id", flat=True)
        .first()
    )

"""Every guardian page that shows a registrant is wrapped in guardian_required."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from mimamori.registry.access import guardian_registrant

View = Callable[..., HttpResponse]


def guardian_required(view: View) -> View:
    """Passes the guardian's own registrant to the view as ``registrant``; nobody else's ever."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and getattr(user, "is_guardian", False)):
            return redirect_to_login(request.get_full_path(), reverse("portal:login"))
        return view(request, *args, registrant=guardian_registrant(user), **kwargs)

    wrapped.guardian_required = True  # type: ignore[attr-defined]
    return wrapped

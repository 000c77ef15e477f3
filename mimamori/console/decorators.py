"""Every console view is wrapped in staff_required: staff with a role, nobody else."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not (user.is_authenticated and getattr(user, "is_console_user", False)):
            return redirect_to_login(request.get_full_path(), reverse("console:login"))
        return view(request, *args, **kwargs)

    wrapped.staff_required = True  # type: ignore[attr-defined]
    return wrapped

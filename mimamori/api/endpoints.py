"""The REST API under /api/v1/: bearer-token auth, JSON errors as {"detail": ...}."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.openapi.views import openapi_view

from mimamori.api.audit import router as audit_router
from mimamori.api.auth import StaffToken
from mimamori.api.broadcasts import router as broadcasts_router
from mimamori.api.maintenance import router as maintenance_router
from mimamori.api.registry import router as registry_router
from mimamori.api.reminders import router as reminders_router


def staff_only_docs(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The API document and its Swagger UI page are for staff: a console session or a live token.

    Anyone else gets 401 JSON for /openapi.json and the console login for /docs.
    """

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if (user.is_authenticated and getattr(user, "is_console_user", False)) or StaffToken()(request):
            return view(request, *args, **kwargs)
        if getattr(view, "func", None) is openapi_view:
            return redirect_to_login(request.get_full_path(), reverse("console:login"))
        return JsonResponse({"detail": _("Unauthorized")}, status=401)

    return wrapped


api = NinjaAPI(
    title="mimamori API", version="1", urls_namespace="api", auth=StaffToken(), docs_decorator=staff_only_docs
)


def _location(field: str) -> list[str | int]:
    # Domain verbs name address slots address1..address4; the API takes them as a list.
    if field.startswith("address") and field[len("address") :].isdigit():
        return ["body", "addresses", int(field[len("address") :]) - 1]
    if field == "__all__":
        return ["body"]
    return ["body", field]


@api.exception_handler(DjangoValidationError)
def domain_validation_error(request: HttpRequest, error: DjangoValidationError) -> HttpResponse:
    """Refusals from models and domain verbs, in the shape ninja uses for schema errors."""
    if hasattr(error, "error_dict"):
        detail = [
            {"loc": _location(field), "msg": message, "type": "invalid"}
            for field, messages in error.message_dict.items()
            for message in messages
        ]
    else:
        detail = [{"loc": ["body"], "msg": message, "type": "invalid"} for message in error.messages]
    return api.create_response(request, {"detail": detail}, status=422)


@api.exception_handler(PermissionDenied)
def permission_denied(request: HttpRequest, error: PermissionDenied) -> HttpResponse:
    return api.create_response(request, {"detail": str(error) or _("Not allowed.")}, status=403)


api.add_router("/", registry_router)
api.add_router("/", broadcasts_router)
api.add_router("/", reminders_router)
api.add_router("/", audit_router)
api.add_router("/", maintenance_router)

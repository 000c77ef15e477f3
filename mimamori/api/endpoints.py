"""The REST API under /api/v1/: bearer-token auth, JSON errors as {"detail": ...}."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError, ValidationErrorContext
from ninja.openapi.views import openapi_view

from mimamori.api.audit import router as audit_router
from mimamori.api.auth import StaffToken
from mimamori.api.broadcasts import router as broadcasts_router
from mimamori.api.gates import router as gates_router
from mimamori.api.maintenance import router as maintenance_router
from mimamori.api.registry import router as registry_router
from mimamori.api.reminders import router as reminders_router
from mimamori.api.templates import router as templates_router


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


def _message(error: dict[str, Any]) -> str:
    """pydantic's message for a refused value, in the user's language where we know the kind."""
    ctx = error.get("ctx") or {}
    kind = error.get("type")
    if kind == "missing":
        return _("This field is required.")
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return _("Please enter a value.")
    if kind == "string_too_long":
        return _("This is too long (at most %(max)d characters).") % {"max": ctx["max_length"]}
    if kind == "string_pattern_mismatch":
        return _("This value is not in the accepted form (see the API document).")
    if kind == "too_long":
        return _("Too many items (at most %(max)d).") % {"max": ctx["max_length"]}
    if kind == "literal_error":
        return _("Choose one of %(expected)s.") % {"expected": ctx.get("expected", "")}
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return _("Enter a whole number.")
    if kind == "less_than_equal":
        return _("Enter a number no greater than %(max)s.") % {"max": ctx["le"]}
    if kind == "greater_than_equal":
        return _("Enter a number no less than %(min)s.") % {"min": ctx["ge"]}
    return str(error.get("msg", ""))


class Api(NinjaAPI):
    def validation_error_from_error_contexts(
        self, error_contexts: list[ValidationErrorContext]
    ) -> ValidationError:
        """422 details located as the domain's are (["body", field]), with messages translated."""
        error = super().validation_error_from_error_contexts(error_contexts)
        body = [c.model for c in error_contexts if c.model.__ninja_param_source__ == "body"]
        # ninja names the body parameter (["body", "data", field]); with one there is nothing to tell apart.
        names = {name for model in body for name in model.model_fields} if len(body) == 1 else set()
        for item in error.errors:
            loc = tuple(item["loc"])
            if len(names) == 1 and len(loc) > 2 and loc[0] == "body" and loc[1] in names:
                item["loc"] = ("body", *loc[2:])
            item["msg"] = _message(item)
            item.pop("ctx", None)
        return error


api = Api(
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


@api.exception_handler(RequestDataTooBig)
def too_large(request: HttpRequest, error: RequestDataTooBig) -> HttpResponse:
    """A body beyond DATA_UPLOAD_MAX_MEMORY_SIZE: Django refuses to read it; say so in JSON."""
    return api.create_response(
        request,
        {
            "detail": _("The request is too large (at most %(max)d bytes).")
            % {"max": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
        },
        status=413,
    )


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    """Our refusals, worded already, and ninja's own, put in the user's language: no token or a
    wrong one, and a body that is not JSON in UTF-8."""
    detail = str(error)
    if isinstance(error, AuthenticationError):
        detail = _("Unauthorized")
    elif error.status_code == 400 and detail.startswith("Cannot parse request body"):
        detail = _("The request body is not JSON in UTF-8.")
    return api.create_response(request, {"detail": detail}, status=error.status_code)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, error: Http404) -> HttpResponse:
    """An object that does not exist and one outside the token's scope: the same words."""
    return api.create_response(request, {"detail": _("Not found.")}, status=404)


api.add_router("/", registry_router)
api.add_router("/", broadcasts_router)
api.add_router("/", reminders_router)
api.add_router("/", audit_router)
api.add_router("/", maintenance_router)
api.add_router("/", templates_router)
api.add_router("/", gates_router)

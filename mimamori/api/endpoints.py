"""The REST API under /api/v1/: bearer-token auth, JSON errors as {"detail": ...}."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from ninja import NinjaAPI

from mimamori.api.audit import router as audit_router
from mimamori.api.auth import StaffToken
from mimamori.api.broadcasts import router as broadcasts_router
from mimamori.api.maintenance import router as maintenance_router
from mimamori.api.registry import router as registry_router
from mimamori.api.reminders import router as reminders_router

api = NinjaAPI(title="mimamori API", version="1", urls_namespace="api", auth=StaffToken())


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

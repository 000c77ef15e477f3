"""GET /audit-events: the audit log for integrations, read-only (P9).

Scoped as the console page: centre staff read everything, municipality staff their own
municipality's events, school staff are refused. There is no endpoint that writes one.
"""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

import re
from datetime import date
from typing import Annotated, Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from ninja.pagination import paginate
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from mimamori.accounts.access import audit_events_for, can_read_audit_log
from mimamori.api.auth import staff_of
from mimamori.api.pagination import Pages
from mimamori.api.schemas import ONE_LINE, READ_ERRORS, LocalTime, errors, line
from mimamori.audit.models import AuditEvent
from mimamori.audit.search import search

router = Router(tags=["audit"])


class AuditEventOut(Schema):
    id: int
    at: LocalTime
    actor: str = Field(description="Login of who acted; for failed logins the login ID tried.")
    action: str = Field(description='Dotted name, e.g. "login.failed", "broadcast.sent".')
    target: str
    municipality: str | None = Field(description="The municipality's code; null for centre-wide events.")
    ip_address: str | None
    details: dict[str, Any]

    @staticmethod
    def resolve_actor(obj: AuditEvent) -> str:
        return obj.actor_name

    @staticmethod
    def resolve_municipality(obj: AuditEvent) -> str | None:
        return obj.municipality.code if obj.municipality else None


def _day(value: Any) -> Any:
    """A day as the document says it (format: date, YYYY-MM-DD), not pydantic's wider reading."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise PydanticCustomError("date_from_datetime_parsing", _("Enter a date as YYYY-MM-DD."))
    return value


Day = Annotated[date, BeforeValidator(_day)]


class AuditFilter(Schema):
    action: Annotated[str, line(64), ONE_LINE] | None = None
    actor: Annotated[str, line(150), ONE_LINE] | None = Field(None, description="Part of the login.")
    target: Annotated[str, line(200), ONE_LINE] | None = Field(
        None, description='Part of the target, e.g. "broadcast 12".'
    )
    date_from: Day | None = Field(None, description="First day (local time), inclusive.")
    date_to: Day | None = Field(None, description="Last day (local time), inclusive.")


@router.get("/audit-events", response={200: list[AuditEventOut], **READ_ERRORS, **errors(403)})
@paginate(Pages)
def list_audit_events(request: HttpRequest, filters: Query[AuditFilter]) -> QuerySet[AuditEvent]:
    user = staff_of(request)
    if not can_read_audit_log(user):
        raise HttpError(403, _("Only the support centre and municipalities can read the audit log."))
    wanted = {name: value for name, value in filters.dict().items() if value not in (None, "")}
    return search(audit_events_for(user), wanted).select_related("municipality").order_by("-at", "-pk")

"""Maintenance window endpoints (S9): centre staff plan windows and list them.

Thin: mimamori.maintenance.windows validates, saves and audits; anyone but the centre gets 403.
"""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from datetime import datetime
from typing import Annotated

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.utils import timezone
from ninja import Field, Router, Schema, Status

from mimamori.api.auth import staff_of
from mimamori.api.schemas import BODY_ERRORS, MAX_ITEMS, MULTI_LINE, Body, Code, LocalTime, errors, lines
from mimamori.maintenance import windows
from mimamori.maintenance.models import MESSAGE_MAX, MaintenanceWindow

router = Router(tags=["maintenance"])


class WindowIn(Body):
    starts_at: datetime = Field(strict=False, description="ISO 8601 with offset, in the future.")
    ends_at: datetime = Field(strict=False, description="After starts_at, at most 7 days later.")
    message: Annotated[str, lines(MESSAGE_MAX), MULTI_LINE] = Field(
        description="Shown to guardians in the notice mail and on the maintenance page."
    )
    municipalities: list[Code] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Municipality codes affected; empty means every municipality.",
    )


class WindowOut(Schema):
    id: int
    starts_at: LocalTime
    ends_at: LocalTime
    message: str
    municipalities: list[str] = Field(description="Codes; empty means every municipality.")
    version: int = Field(description="Goes up with every change; each version is announced once.")
    cancelled_at: LocalTime | None

    @staticmethod
    def resolve_municipalities(obj: MaintenanceWindow) -> list[str]:
        return sorted(m.code for m in obj.municipalities.all())


def _centre(request: HttpRequest) -> None:
    if not windows.can_plan(staff_of(request)):
        raise PermissionDenied(windows.CENTRE_ONLY)


def _aware(moment: datetime) -> datetime:
    # A time without an offset is the installation's local time (Asia/Tokyo).
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


@router.post("/maintenance-windows", response={201: WindowOut, **BODY_ERRORS, **errors(403)})
def plan_window(request: HttpRequest, payload: WindowIn) -> Status[MaintenanceWindow]:
    _centre(request)
    window = windows.plan(
        staff_of(request),
        starts_at=_aware(payload.starts_at),
        ends_at=_aware(payload.ends_at),
        message=payload.message,
        municipality_codes=payload.municipalities,
        request=request,
    )
    return Status(201, window)


@router.get("/maintenance-windows", response={200: list[WindowOut], **errors(401, 403)})
def list_windows(request: HttpRequest) -> list[MaintenanceWindow]:
    _centre(request)
    return list(MaintenanceWindow.objects.prefetch_related("municipalities").order_by("-starts_at", "-pk"))

"""Verbs for maintenance windows (S9): plan, change (move), cancel, and which one is in force.

Only centre staff plan windows. Every change makes a new version of the window, which the
sweep (notices.due_notices) then tells the affected municipalities about.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mimamori import text
from mimamori.accounts.models import Role, User
from mimamori.audit import log as audit
from mimamori.maintenance.models import MESSAGE_MAX, MaintenanceWindow
from mimamori.registry.models import Municipality

LONGEST = timedelta(days=7)


def can_plan(user: object) -> bool:
    return bool(getattr(user, "is_console_user", False)) and getattr(user, "role", "") == Role.CENTRE


CENTRE_ONLY = gettext_lazy("Only the support centre plans maintenance windows.")


def _require_centre(user: User) -> None:
    if not can_plan(user):
        raise PermissionDenied(str(CENTRE_ONLY))


def _municipalities(codes: Iterable[str]) -> list[Municipality]:
    wanted = sorted({code.strip() for code in codes if code.strip()})
    found = list(Municipality.objects.filter(code__in=wanted))
    if len(found) != len(wanted):
        unknown = sorted(set(wanted) - {m.code for m in found})
        raise ValidationError(
            {"municipalities": _("Unknown municipality: %(codes)s") % {"codes": ", ".join(unknown)}}
        )
    return found


def _clean(
    starts_at: datetime | None, ends_at: datetime | None, message: str, now: datetime, *, started: bool
) -> tuple[datetime, datetime, str]:
    errors: dict[str, str] = {}
    message = (message or "").strip()
    if starts_at is None:
        errors["starts_at"] = _("Please enter when the maintenance starts.")
    elif not started and starts_at <= now:
        errors["starts_at"] = _("The start must be in the future.")
    if ends_at is None:
        errors["ends_at"] = _("Please enter when the maintenance ends.")
    elif starts_at is not None and ends_at <= starts_at:
        errors["ends_at"] = _("The end must be after the start.")
    elif ends_at <= now:
        errors["ends_at"] = _("The end must be in the future.")
    elif starts_at is not None and ends_at - starts_at > LONGEST:
        errors["ends_at"] = _("A maintenance window lasts at most 7 days.")
    if not message:
        errors["message"] = _("Please enter a message for guardians.")
    elif len(message) > MESSAGE_MAX:
        errors["message"] = _("The message is too long (at most %(max)d characters).") % {"max": MESSAGE_MAX}
    elif problem := text.problem(message, multiline=True):
        errors["message"] = str(problem)
    if errors or starts_at is None or ends_at is None:
        raise ValidationError(errors)
    return starts_at, ends_at, message


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _codes(window: MaintenanceWindow) -> list[str]:
    return sorted(m.code for m in window.municipalities.all())


def plan(
    user: User,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    message: str,
    municipality_codes: Iterable[str] = (),
    now: datetime | None = None,
    request: HttpRequest | None = None,
) -> MaintenanceWindow:
    """Plan a window; no municipality named means all of them. ``now``: the clock (tests)."""
    _require_centre(user)
    now = now or timezone.now()
    starts_at, ends_at, message = _clean(starts_at, ends_at, message, now, started=False)
    cities = _municipalities(municipality_codes)
    with transaction.atomic():
        window = MaintenanceWindow.objects.create(
            starts_at=starts_at, ends_at=ends_at, message=message, created_by=user, created_at=now
        )
        window.municipalities.set(cities)
        audit.record(
            "maintenance.planned",
            actor=user,
            target=f"maintenance {window.pk}",
            request=request,
            starts_at=starts_at.isoformat(),
            ends_at=ends_at.isoformat(),
            municipalities=_codes(window),
        )
    return window


def change(
    window: MaintenanceWindow,
    user: User,
    *,
    starts_at: datetime | None,
    ends_at: datetime | None,
    message: str,
    municipality_codes: Iterable[str] = (),
    now: datetime | None = None,
    request: HttpRequest | None = None,
) -> bool:
    """Move a window or change what it says or whom it affects; False if nothing changed.

    Once a window has begun only its end (and message) may change: its start is history.
    """
    _require_centre(user)
    now = now or timezone.now()
    with transaction.atomic():
        window = MaintenanceWindow.objects.select_for_update().get(pk=window.pk)
        if window.is_cancelled or window.ends_at <= now:
            raise ValidationError(_("This maintenance window is over or cancelled; it cannot be changed."))
        started = window.starts_at <= now
        if started and starts_at is not None and _minute(starts_at) == _minute(window.starts_at):
            starts_at = window.starts_at  # the form shows minutes; the start stays as it was
        if started and starts_at != window.starts_at:
            raise ValidationError(
                {"starts_at": _("The maintenance has already begun; only its end can be changed.")}
            )
        starts_at, ends_at, message = _clean(starts_at, ends_at, message, now, started=started)
        cities = _municipalities(municipality_codes)
        before = (window.starts_at, window.ends_at, _codes(window))
        after = (starts_at, ends_at, sorted(m.code for m in cities))
        if before == after and message == window.message:
            return False
        moved = before[:2] != after[:2]
        if before != after:
            # Affected guardians hear about the new version (notices.due_notices).
            window.version += 1
        window.starts_at, window.ends_at, window.message = starts_at, ends_at, message
        window.save(update_fields=["starts_at", "ends_at", "message", "version"])
        window.municipalities.set(cities)
        audit.record(
            "maintenance.moved" if moved else "maintenance.changed",
            actor=user,
            target=f"maintenance {window.pk}",
            request=request,
            version=window.version,
            starts_at=starts_at.isoformat(),
            ends_at=ends_at.isoformat(),
            municipalities=after[2],
            before={
                "starts_at": before[0].isoformat(),
                "ends_at": before[1].isoformat(),
                "municipalities": before[2],
            },
        )
    return True


def cancel(
    window: MaintenanceWindow, user: User, *, now: datetime | None = None, request: HttpRequest | None = None
) -> bool:
    """Call a window off; False if it was already cancelled or over. Those told hear of it."""
    _require_centre(user)
    now = now or timezone.now()
    with transaction.atomic():
        cancelled = MaintenanceWindow.objects.filter(
            pk=window.pk, cancelled_at__isnull=True, ends_at__gt=now
        ).update(cancelled_at=now, version=F("version") + 1)
        if cancelled:
            window.refresh_from_db()
            audit.record(
                "maintenance.cancelled", actor=user, target=f"maintenance {window.pk}", request=request
            )
    return bool(cancelled)


@dataclass(frozen=True)
class InForce:
    ends_at: datetime
    message: str
    municipality_id: int | None  # None: every municipality


def in_force(now: datetime) -> list[InForce]:
    """The windows in force now, one row per affected municipality. One query (ends_at index)."""
    rows = MaintenanceWindow.objects.filter(
        cancelled_at__isnull=True, starts_at__lte=now, ends_at__gt=now
    ).values_list("ends_at", "message", "municipalities")
    return [InForce(ends_at, message, city) for ends_at, message, city in rows]


def applying(windows: list[InForce], municipality_id: int | None) -> InForce | None:
    """The window that closes the guardian site to a guardian of that municipality, if any.

    ``municipality_id`` None (nobody logged in): only a window for every municipality counts,
    since a visitor's municipality is unknown. Of several, the one ending last.
    """
    found = [
        w
        for w in windows
        if w.municipality_id is None or (municipality_id is not None and w.municipality_id == municipality_id)
    ]
    return max(found, key=lambda w: w.ends_at, default=None)

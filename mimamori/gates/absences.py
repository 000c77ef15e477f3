"""欠席連絡 (B11): a guardian says a child will be absent, or late, on a date.

One live report per child and date: filing again replaces the earlier one (it is kept, withdrawn,
so the school can see what changed). A report is for today or a later date, never the past: the
attendance check of a day that has begun must not change behind the school's back. A guardian
may withdraw a report until the day is over. The reason is personal (often about health), so
the audit log records that a report was filed, its date and kind, never the reason.
"""

from __future__ import annotations

import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.gates.models import Absence, AbsenceKind
from mimamori.registry.models import Registrant, RegistrantStatus, School

# How far ahead a report may be filed (a planned hospital stay, a family trip).
MAX_DAYS_AHEAD = 60


def _target(registrant: Registrant) -> str:
    return f"registrant {registrant.pk}"


def file(
    registrant: Registrant,
    day: datetime.date,
    kind: str,
    reason: str,
    by: User | None,
    *,
    request: HttpRequest | None = None,
    today: datetime.date | None = None,
) -> Absence:
    """File a report for ``day``; an earlier live report of that child and day is replaced."""
    today = today or timezone.localdate()
    if day < today:
        raise ValidationError(_("A report can be filed for today or a later date."), code="past")
    if day > today + datetime.timedelta(days=MAX_DAYS_AHEAD):
        raise ValidationError(
            _("A report can be filed up to %(days)d days ahead.") % {"days": MAX_DAYS_AHEAD}, code="far"
        )
    if kind not in AbsenceKind.values:
        raise ValidationError(_("Choose absent or late."), code="kind")
    with transaction.atomic():
        # The child's row serialises two reports filed at once (two guardians, a double tap):
        # the second replaces the first instead of failing on the one-live-per-day constraint.
        Registrant.objects.select_for_update().filter(pk=registrant.pk).first()
        now = timezone.now()
        replaced = Absence.objects.filter(registrant=registrant, day=day, withdrawn_at__isnull=True).update(
            withdrawn_at=now
        )
        absence = Absence.objects.create(
            registrant=registrant,
            day=day,
            kind=kind,
            reason=reason,
            filed_at=now,
            filed_by=by,
        )
        record(
            "gates.absence_filed",
            actor=by,
            target=_target(registrant),
            municipality=registrant.school.municipality_id,
            request=request,
            day=day.isoformat(),
            kind=kind,
            replaced=bool(replaced),
        )
    return absence


def withdraw(
    registrant: Registrant,
    day: datetime.date,
    by: User | None,
    *,
    request: HttpRequest | None = None,
    today: datetime.date | None = None,
) -> bool:
    """Withdraw the child's live report for ``day``; False when there is none (or it is past)."""
    today = today or timezone.localdate()
    if day < today:
        return False
    with transaction.atomic():
        withdrawn = Absence.objects.filter(registrant=registrant, day=day, withdrawn_at__isnull=True).update(
            withdrawn_at=timezone.now()
        )
        if withdrawn:
            record(
                "gates.absence_withdrawn",
                actor=by,
                target=_target(registrant),
                municipality=registrant.school.municipality_id,
                request=request,
                day=day.isoformat(),
            )
    return bool(withdrawn)


def upcoming(registrant: Registrant, today: datetime.date | None = None) -> QuerySet[Absence]:
    """The child's live reports from today on."""
    today = today or timezone.localdate()
    return Absence.objects.filter(registrant=registrant, day__gte=today, withdrawn_at__isnull=True).order_by(
        "day"
    )


def of_day(school: School, day: datetime.date) -> QuerySet[Absence]:
    """The school's live reports for ``day``, by grade and class, as staff read them."""
    return (
        Absence.objects.filter(
            registrant__school=school,
            registrant__status=RegistrantStatus.ACTIVE,
            day=day,
            withdrawn_at__isnull=True,
        )
        .select_related("registrant")
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana", "pk")
    )

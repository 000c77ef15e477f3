"""Searching the audit log by action, who, target and date: the console page and the API
filter the same way."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from mimamori.audit.models import AuditEvent

# Days the search can turn into times (the day after the last, in UTC) without overflowing. No
# event is older or newer: bounds beyond these select the same events.
FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(9998, 12, 31)


def _day_start(day: date) -> datetime:
    # Dates are the staff's local days, not UTC ones.
    return timezone.make_aware(datetime.combine(day, time.min))


def search(events: QuerySet[AuditEvent], filters: dict[str, Any]) -> QuerySet[AuditEvent]:
    if "action" in filters:
        events = events.filter(action=filters["action"])
    if "actor" in filters:
        events = events.filter(actor_name__icontains=filters["actor"].strip())
    if "target" in filters:
        events = events.filter(target__icontains=filters["target"].strip())
    if "date_from" in filters:
        events = events.filter(at__gte=_day_start(max(filters["date_from"], FIRST_DAY)))
    if "date_to" in filters:
        events = events.filter(at__lt=_day_start(min(filters["date_to"], LAST_DAY) + timedelta(days=1)))
    return events

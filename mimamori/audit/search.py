"""Searching the audit log by action, who, target and date: the console page and the API
filter the same way."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from mimamori.audit.models import AuditEvent


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
        events = events.filter(at__gte=_day_start(filters["date_from"]))
    if "date_to" in filters:
        events = events.filter(at__lt=_day_start(filters["date_to"] + timedelta(days=1)))
    return events

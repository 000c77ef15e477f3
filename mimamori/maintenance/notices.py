"""Maintenance notices by mail (S9), sent by the periodic sweep when their time comes.

A municipality is told about a window at its maintenance_notice_lead_hours before the start,
told again at once when a window it was told about moves, and told when one is cancelled (or
it is taken out of one). The mails travel as a broadcast of kind "maintenance": its fan-out
reaches every address (slots 1–4) of every active registrant there, whatever the broadcast
option, and its deliveries bring the crash safety, retries and once-per-address of any
broadcast. The MaintenanceNotice rows are written in the same transaction that queues the
broadcast, so each municipality is told about each version of a window exactly once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Count
from django.db.models.functions import Lower
from django.template.loader import render_to_string
from django.utils import timezone, translation

from mimamori.broadcasts import sending
from mimamori.broadcasts.models import SUBJECT_MAX, Broadcast, BroadcastKind
from mimamori.maintenance.models import MaintenanceNotice, MaintenanceWindow, NoticeKind
from mimamori.registry.models import Address, AddressStatus, Municipality, RegistrantStatus

log = logging.getLogger(__name__)

WEEKDAYS = "月火水木金土日"


def japanese_time(moment: datetime, *, year: bool = True) -> str:
    """2025年1月2日(木) 22:00, in the installation's time zone: how the mails name a time."""
    local = timezone.localtime(moment)
    day = f"{local.month}月{local.day}日({WEEKDAYS[local.weekday()]}) {local:%H:%M}"
    return f"{local.year}年{day}" if year else day


def due_notices(now: datetime | None = None) -> int:
    """Send the notices whose time has come; return how many municipalities were told."""
    now = now or timezone.now()
    told = 0
    for window in MaintenanceWindow.objects.filter(ends_at__gt=now):
        # Look first without a lock: most sweeps find nothing due, and need no write lock.
        if _due(window, now):
            told += _notify(window.pk, now)
    return told


def _due(window: MaintenanceWindow, now: datetime) -> dict[str, list[Municipality]]:
    last: dict[int, MaintenanceNotice] = {}
    for notice in window.notices.order_by("version"):
        last[notice.municipality_id] = notice
    affected: list[Municipality] = []
    if not window.is_cancelled:
        affected = list(window.municipalities.all()) or list(Municipality.objects.all())
    due: dict[str, list[Municipality]] = defaultdict(list)
    for city in affected:
        told = last.get(city.pk)
        if told is None or told.kind == NoticeKind.CANCELLATION:
            if now >= window.starts_at - timedelta(hours=city.maintenance_notice_lead_hours):
                due[NoticeKind.NOTICE].append(city)
        elif (told.starts_at, told.ends_at) != (window.starts_at, window.ends_at):
            # They were told other times: tell them now, not at the lead time of the new ones.
            due[NoticeKind.CHANGE].append(city)
    still = {city.pk for city in affected}
    for told in last.values():
        if told.kind != NoticeKind.CANCELLATION and told.municipality_id not in still:
            due[NoticeKind.CANCELLATION].append(told.municipality)
    return due


def _notify(window_id: int, now: datetime) -> int:
    told = 0
    with transaction.atomic():
        # The lock makes concurrent sweeps (several workers) take turns; the second finds the
        # notices the first wrote and sends nothing.
        window = MaintenanceWindow.objects.select_for_update().get(pk=window_id)
        for kind, cities in _due(window, now).items():
            broadcast = _broadcast(window, kind, cities)
            MaintenanceNotice.objects.bulk_create(
                MaintenanceNotice(
                    window=window,
                    municipality=city,
                    version=window.version,
                    kind=kind,
                    starts_at=window.starts_at,
                    ends_at=window.ends_at,
                    broadcast=broadcast,
                    sent_at=now,
                )
                for city in cities
            )
            sending.send(broadcast)
            told += len(cities)
            log.info("maintenance %s: %s notice to %s", window.pk, kind, [c.code for c in cities])
    return told


def _broadcast(window: MaintenanceWindow, kind: str, cities: list[Municipality]) -> Broadcast:
    context = {
        "kind": kind,
        "starts": japanese_time(window.starts_at),
        "ends": japanese_time(window.ends_at),
        "starts_short": japanese_time(window.starts_at, year=False),
        "message": window.message,
    }
    # Guardian mail is Japanese whatever language the staff member's browser asked for.
    with translation.override("ja"):
        subject = render_to_string("maintenance/notice_subject.txt", context).strip()
        body = render_to_string("maintenance/notice_body.txt", context).strip()
    broadcast = Broadcast.objects.create(
        created_by=window.created_by,
        kind=BroadcastKind.MAINTENANCE,
        subject=subject[:SUBJECT_MAX],
        body=body,
    )
    broadcast.municipalities.set(cities)
    return broadcast


@dataclass(frozen=True)
class AtOnce:
    """Who saving a plan would mail at once: the municipalities whose notice time has come, and
    how many distinct addresses (every slot of every active registrant there, as the notice
    broadcast reaches them, less the suppressed ones)."""

    municipalities: list[Municipality]
    addresses: int


def mailed_at_once(
    starts_at: datetime,
    ends_at: datetime,
    municipality_codes: list[str],
    *,
    window: MaintenanceWindow | None = None,
    now: datetime | None = None,
) -> AtOnce:
    """What _due would find right after ``window`` (None: a new one) is saved with these times
    and municipalities: the console asks before a plan that mails guardians the moment it is
    saved (a window starting inside a municipality's notice period, or a move of one they
    were told about)."""
    now = now or timezone.now()
    cities = list(Municipality.objects.filter(code__in=municipality_codes)) or list(
        Municipality.objects.all()
    )
    told: dict[int, MaintenanceNotice] = {}
    if window is not None and window.pk is not None:
        for notice in window.notices.order_by("version"):
            told[notice.municipality_id] = notice
    due = []
    for city in cities:
        last = told.get(city.pk)
        if last is None or last.kind == NoticeKind.CANCELLATION:
            if now >= starts_at - timedelta(hours=city.maintenance_notice_lead_hours):
                due.append(city)
        elif (last.starts_at, last.ends_at) != (starts_at, ends_at):
            due.append(city)
    if not due:
        return AtOnce([], 0)
    addresses = (
        Address.objects.filter(
            registrant__status=RegistrantStatus.ACTIVE, registrant__school__municipality__in=due
        )
        .exclude(status=AddressStatus.SUPPRESSED)
        .aggregate(n=Count(Lower("email"), distinct=True))["n"]
    )
    return AtOnce(due, addresses or 0)

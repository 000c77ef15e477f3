"""Carrier profiles: how mail for each group of destination domains is handed to the relay (B3,
B12), with limits shared by every worker process of the installation.

A group (docomo.ne.jp; ezweb.ne.jp and au.com; …; ``default`` for every other domain) has
- **sessions**: SMTP sessions open at once for it, across all workers and both task engines.
  Each is a lease row (CarrierLease) a delivery takes for as long as it sends, renews while it
  works and gives back when done; a dead worker's lease runs out
  (MIMAMORI_CARRIER_LEASE_SECONDS). A task that finds no lease free puts that group's mails
  back for a moment instead of waiting for one, so it never holds a worker on a busy group;
- **mails per session**: a session is closed and opened anew after that many (docomo ≤ 100);
- **a rate** (mails per minute, 0 = none): a shared pace on the profile's row. A task reserves
  the start times of its mails in one short transaction (a generic cell rate algorithm:
  ``pace`` is when the next mail may start) and puts back what would have to wait longer than
  MIMAMORI_CARRIER_HORIZON_SECONDS;
- **trouble**: deferrals (4xx for a recipient) and slow replies (over MIMAMORI_CARRIER_SLOW_SECONDS)
  in a row, a mail that gets through starting the count again. At
  MIMAMORI_CARRIER_TROUBLE_LIMIT the group pauses, for longer each time
  (MIMAMORI_CARRIER_PAUSE_SECONDS doubling up to MIMAMORI_CARRIER_PAUSE_MAX_SECONDS): its mails
  wait, without using up their attempts, and after the pause a single session, in the whole
  installation, tries again: the first mail it gets through ends the trouble, the first trouble
  pauses the group again. Other groups are never paused with it.

The relay itself (deploy/postfix/) holds the carriers' own limits towards their servers; these
bound what mimamori hands it, so that one group's trouble cannot hold the workers every group
needs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from mimamori.mail.models import CarrierLease, CarrierProfile
from mimamori.mail.smtp import Outcome, Reply

DEFAULT = "default"


@dataclass(frozen=True)
class Profile:
    """A carrier group as a delivery reads it at its start."""

    id: int
    name: str
    label: str
    sessions: int
    mails_per_session: int
    rate_per_minute: int
    charset: str
    trouble: int
    pauses: int
    paused_until: datetime | None

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    @property
    def troubled(self) -> bool:
        """Trouble was seen lately: the first mail through ends it (recovered())."""
        return bool(self.trouble or self.pauses)


class Profiles:
    """Every group, and which one an address belongs to (its domain or a parent domain listed)."""

    def __init__(self, rows: Iterable[CarrierProfile]) -> None:
        self.by_domain: dict[str, Profile] = {}
        self.default: Profile | None = None
        for row in rows:
            profile = Profile(
                row.pk,
                row.name,
                row.label,
                row.sessions,
                row.mails_per_session,
                row.rate_per_minute,
                row.charset,
                row.trouble,
                row.pauses,
                row.paused_until,
            )
            if row.name == DEFAULT:
                self.default = profile
            for domain in row.domains:
                self.by_domain[domain.lower()] = profile
        if self.default is None:
            raise ValueError("no default carrier profile")

    def of(self, address: str) -> Profile:
        labels = address.rpartition("@")[2].lower().split(".")
        for start in range(len(labels) - 1):
            profile = self.by_domain.get(".".join(labels[start:]))
            if profile is not None:
                return profile
        assert self.default is not None
        return self.default


def current() -> Profiles:
    """The groups as they are now (one query): a delivery reads them once at its start.

    The default group is always there: made again, with its initial settings, if it is missing
    (a database flushed by hand), so that no mail is held for want of it."""
    rows = list(CarrierProfile.objects.all())
    if not any(row.name == DEFAULT for row in rows):
        default, _ = CarrierProfile.objects.get_or_create(
            name=DEFAULT, defaults={"label": "その他のドメイン", "sessions": 24, "position": 99}
        )
        rows.append(default)
    return Profiles(rows)


_cached: tuple[float, Profiles] | None = None


def cached(max_age: float = 30.0) -> Profiles:
    """The groups as this process last read them, at most ``max_age`` seconds ago, for what only
    needs their settings (the character set a mail is written in)."""
    global _cached
    if _cached is None or time.monotonic() - _cached[0] > max_age:
        _cached = (time.monotonic(), current())
    return _cached[1]


def by_charset() -> dict[str, list[str]]:
    """The groups' labels by the character set their mail is written in, in the console's order."""
    groups: dict[str, list[str]] = {}
    for label, charset in CarrierProfile.objects.order_by("position", "name").values_list("label", "charset"):
        groups.setdefault(charset, []).append(label)
    return groups


def forget() -> None:
    """Read the groups again at the next cached(): after this process changed one."""
    global _cached
    _cached = None


# --- sessions -------------------------------------------------------------------------------


def acquire(wanted: dict[int, int], holder: uuid.UUID, urgent: bool = False) -> dict[int, list[int]]:
    """Take up to ``wanted[profile id]`` free sessions of each group for ``holder``, in one
    statement; returns the lease ids taken, by group (a group may get none).

    A quarter of each group's sessions is kept for urgent broadcasts (B2): normal ones take the
    lower slots only, urgent ones any, the highest first, so an alert finds a session even
    while a large broadcast holds every other one.

    Free: never held, or its holder's lease ran out. Two tasks taking at once never get the same
    lease: the UPDATE checks that each row is still free as it writes it (on PostgreSQL the later
    writer re-reads the row the earlier one wrote; SQLite writes one transaction at a time), so a
    loser gets fewer leases, not a shared one.
    """
    wanted = {profile: count for profile, count in wanted.items() if count > 0}
    if not wanted:
        return {}
    now = timezone.now()
    lease, profile = (
        connection.ops.quote_name(model._meta.db_table) for model in (CarrierLease, CarrierProfile)
    )
    limit = " ".join("WHEN %s THEN %s" for _ in wanted)
    order, slots = ("DESC", "p.sessions") if urgent else ("", "p.sessions - p.sessions / 4")
    slots = f"CASE WHEN p.pauses > 0 THEN 1 ELSE {slots} END"  # after a pause, one probe at a time
    groups = ", ".join("%s" for _ in wanted)
    sql = f"""
        UPDATE {lease} SET holder = %s, expires_at = %s
        WHERE id IN (
            SELECT id FROM (
                SELECT l.id, l.profile_id,
                       row_number() OVER (PARTITION BY l.profile_id ORDER BY l.slot {order}) AS n
                FROM {lease} l JOIN {profile} p ON p.id = l.profile_id
                WHERE l.profile_id IN ({groups}) AND l.slot < {slots}
                  AND (l.holder IS NULL OR l.expires_at < %s)
            ) free
            WHERE n <= CASE profile_id {limit} END
        ) AND (holder IS NULL OR expires_at < %s)
        RETURNING id, profile_id
    """  # noqa: S608 - table names from the models, values as parameters
    adapt = connection.ops.adapt_datetimefield_value
    holder_value = CarrierLease._meta.get_field("holder").get_db_prep_value(holder, connection)
    expires = adapt(now + timedelta(seconds=settings.MIMAMORI_CARRIER_LEASE_SECONDS))
    parameters = [holder_value, expires, *wanted, adapt(now)]
    parameters += [value for pair in wanted.items() for value in pair] + [adapt(now)]
    taken: dict[int, list[int]] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        for lease_id, profile_id in cursor.fetchall():
            taken.setdefault(profile_id, []).append(lease_id)
    return taken


def renew(leases: Iterable[int]) -> None:
    ids = list(leases)
    if ids:
        expires = timezone.now() + timedelta(seconds=settings.MIMAMORI_CARRIER_LEASE_SECONDS)
        CarrierLease.objects.filter(pk__in=ids).update(expires_at=expires)


def release(leases: Iterable[int]) -> None:
    ids = list(leases)
    if ids:
        CarrierLease.objects.filter(pk__in=ids).update(holder=None, expires_at=None)


# --- rate -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pace:
    """Start times granted to a delivery: mail i of the ``granted`` may start at start + i × interval."""

    granted: int
    start: float
    interval: float

    def turn(self, index: int) -> float:
        return self.start + index * self.interval


def reserve(profile: Profile, count: int) -> Pace:
    """Reserve start times for up to ``count`` mails of a rate-limited group: as many as can
    start within MIMAMORI_CARRIER_HORIZON_SECONDS from now (none if the pace is further ahead:
    then ``start`` says when the next one could)."""
    interval = 60.0 / profile.rate_per_minute
    now = time.time()
    horizon = now + settings.MIMAMORI_CARRIER_HORIZON_SECONDS
    with transaction.atomic():
        pace = CarrierProfile.objects.select_for_update().values_list("pace", flat=True).get(pk=profile.id)
        start = max(pace, now)
        granted = 0 if start > horizon else min(count, int((horizon - start) / interval) + 1)
        if granted:
            CarrierProfile.objects.filter(pk=profile.id).update(pace=start + granted * interval)
    return Pace(granted, start, interval)


# --- trouble --------------------------------------------------------------------------------


def pause_length(pauses: int) -> timedelta:
    """The n-th pause in a row (n = 1, 2, …): base, 2 × base, 4 × base … capped."""
    base = settings.MIMAMORI_CARRIER_PAUSE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(pauses - 1, 0), settings.MIMAMORI_CARRIER_PAUSE_MAX_SECONDS))


def trouble_in(reply: Reply, seconds: float) -> str | None:
    """Why a reply counts as trouble for its destination (a deferral of the recipient, or a
    reply slower than MIMAMORI_CARRIER_SLOW_SECONDS), or None. A refusal for good says nothing
    of the destination's health, nor does a cut connection or a refused sender (the relay's)."""
    if seconds > settings.MIMAMORI_CARRIER_SLOW_SECONDS:
        return f"{seconds:.1f} s: {reply.text}"
    if reply.outcome is Outcome.TEMPORARY and reply.about_recipient:
        return reply.text
    return None


def troubled(profile: Profile, reason: str, anew: bool = False) -> datetime | None:
    """Count one deferral or slow reply against the group; returns the end of its pause when
    this (or another worker's trouble meanwhile) paused it.

    ``anew``: a mail got through since the caller last reported trouble, so the run of trouble
    in a row starts again with this one (a greylisted address here and there among mails that
    go through is no trouble of the destination's)."""
    now = timezone.now()
    with transaction.atomic():
        row = CarrierProfile.objects.select_for_update().get(pk=profile.id)
        if row.paused_until is not None and row.paused_until > now:
            return row.paused_until
        row.trouble = 1 if anew else row.trouble + 1
        row.last_trouble = reason[:500]
        # Right after a pause one trouble is enough: the probe found the destination still ill.
        if row.trouble >= (1 if row.pauses else settings.MIMAMORI_CARRIER_TROUBLE_LIMIT):
            row.pauses += 1
            row.trouble = 0
            row.paused_until = now + pause_length(row.pauses)
        CarrierProfile.objects.filter(pk=row.pk).update(
            trouble=row.trouble,
            pauses=row.pauses,
            paused_until=row.paused_until,
            last_trouble=row.last_trouble,
        )
    return row.paused_until if row.paused_until is not None and row.paused_until > now else None


def recovered(profile: Profile) -> None:
    """A mail got through: the group's trouble is over."""
    CarrierProfile.objects.filter(pk=profile.id).filter(Q(trouble__gt=0) | Q(pauses__gt=0)).update(
        trouble=0, pauses=0
    )


# --- settings -------------------------------------------------------------------------------

SETTINGS = ("label", "domains", "sessions", "mails_per_session", "rate_per_minute", "charset")


def change(profile: CarrierProfile, values: dict[str, object]) -> dict[str, list[object]]:
    """Store a group's settings (already validated); returns what changed as {field: [old, new]},
    for the caller's audit log. Workers see them at their next chunk."""
    changes: dict[str, list[object]] = {}
    with transaction.atomic():
        locked = CarrierProfile.objects.select_for_update().get(pk=profile.pk)
        for field in SETTINGS:
            if field in values and getattr(locked, field) != values[field]:
                changes[field] = [getattr(locked, field), values[field]]
                setattr(locked, field, values[field])
        if changes:
            locked.save()  # and the lease rows for added sessions
    profile.refresh_from_db()
    return changes


def resume(profile: CarrierProfile) -> bool:
    """End a group's pause now (staff know the destination is back); False if it was not paused."""
    return bool(
        CarrierProfile.objects.filter(pk=profile.pk, paused_until__gt=timezone.now()).update(
            paused_until=None, trouble=0, pauses=0
        )
    )


def sessions_in_use() -> dict[int, int]:
    """Leases held now, by group."""
    now = timezone.now()
    held = CarrierLease.objects.filter(holder__isnull=False, expires_at__gt=now)
    return {row["profile"]: row["count"] for row in held.values("profile").annotate(count=models.Count("id"))}

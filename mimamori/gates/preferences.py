"""The slots a guardian chose for gate mails (オプション), and a child's recent passes (portal)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.gates.models import GatePass, GatePreference, GateReader, PassOutcome
from mimamori.registry.models import SLOTS, Registrant
from mimamori.registry.registrants import registrant_target

RECENT_DAYS = 7


def gate_slots(registrant: Registrant) -> list[int]:
    """The slots the child's gate mails go to: all four unless the guardian chose otherwise."""
    found = GatePreference.objects.filter(registrant=registrant).values_list("slots", flat=True).first()
    return list(SLOTS) if found is None else sorted(found)


def choose_slots(
    registrant: Registrant, slots: Iterable[int], *, by: User | None, request: HttpRequest | None = None
) -> bool:
    """Keep the guardian's choice (none: no gate mails); True if it changed. Audited."""
    chosen = sorted({int(slot) for slot in slots if int(slot) in SLOTS})
    with transaction.atomic():
        before = gate_slots(registrant)
        if chosen == before:
            return False
        GatePreference.objects.update_or_create(registrant=registrant, defaults={"slots": chosen})
        audit.record(
            "registrant.gate_slots_changed",
            actor=by,
            target=registrant_target(registrant),
            municipality=registrant.school.municipality_id,
            request=request,
            slots=chosen,
            before=before,
        )
    return True


def has_readers(registrant: Registrant) -> bool:
    """Whether the child's school has a gate reader (else there are no gate mails to choose)."""
    return GateReader.objects.filter(school_id=registrant.school_id, revoked_at__isnull=True).exists()


def recent_passes(registrant: Registrant, now: datetime | None = None) -> QuerySet[GatePass]:
    """The child's passes of today and the RECENT_DAYS days before, newest first; repeat reads
    (the same pass read again at the gate) left out."""
    today = timezone.localdate(now or timezone.now())
    since = timezone.make_aware(datetime.combine(today - timedelta(days=RECENT_DAYS), datetime.min.time()))
    return (
        GatePass.objects.filter(registrant=registrant, at__gte=since)
        .exclude(outcome=PassOutcome.REPEAT)
        .select_related("reader")
        .order_by("-at", "-pk")
    )

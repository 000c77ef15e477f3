"""登下校の記録 (B6): the child's passes at the school gate, today's and the last seven days'.

Like every portal page it takes no ID: the child is the logged-in guardian's.
"""

from __future__ import annotations

from itertools import groupby

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from mimamori.gates import preferences
from mimamori.portal.decorators import guardian_required
from mimamori.registry.models import Registrant


@guardian_required
@require_GET
def passes(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    found = list(preferences.recent_passes(registrant))
    days = [(day, list(rows)) for day, rows in groupby(found, key=lambda p: timezone.localdate(p.at))]
    return render(
        request,
        "portal/passes.html",
        {
            "registrant": registrant,
            "school": registrant.school,
            "municipality": registrant.school.municipality,
            "days": days,
            "today": timezone.localdate(),
            "recent_days": preferences.RECENT_DAYS,
            "gate_slots": preferences.gate_slots(registrant),
        },
    )

"""A municipality's earthquake settings, changed by the centre (console, API) or the
municipality's own staff (console), and audited with old and new values."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.quakes.models import EarthquakeSettings
from mimamori.registry.models import Municipality

FIELDS = (
    "city_codes",
    "area_codes",
    "threshold",
    "hold_seconds",
    "subject",
    "body",
    "answers",
    "tell_municipality_staff",
    "tell_school_staff",
    "tell_support_desk",
    "tell_centre",
)


def change_settings(
    municipality: Municipality,
    values: dict[str, Any],
    *,
    by: User | None,
    request: HttpRequest | None = None,
) -> dict[str, list[Any]]:
    """Store the values given (ValidationError if full_clean refuses them) and audit what
    changed as {field: [old, new]}."""
    changes: dict[str, list[Any]] = {}
    with transaction.atomic():
        config, _created = EarthquakeSettings.objects.select_for_update(of=("self",)).get_or_create(
            municipality=municipality
        )
        for field in FIELDS:
            if field not in values:
                continue
            old, new = getattr(config, field), values[field]
            if old != new:
                changes[field] = [old, new]
                setattr(config, field, new)
        if changes:
            config.full_clean()
            config.save()
            record(
                "quake.settings_changed",
                actor=by,
                target=f"municipality {municipality.code}",
                municipality=municipality,
                request=request,
                changes=changes,
            )
    return changes

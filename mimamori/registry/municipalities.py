"""A municipality's service settings (S12), changed by support-centre staff and audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.registry.models import Municipality

SETTINGS = (
    "mail_domain",
    "support_name",
    "support_phone",
    "support_email",
    "support_hours",
    "confirmation_links_enabled",
    "one_click_unsubscribe",
    "broadcast_slots",
    "maintenance_notice_lead_hours",
    "reach_test_interval_days",
)


def change_settings(
    municipality: Municipality, values: dict[str, Any], *, by: User, request: HttpRequest | None = None
) -> dict[str, list[Any]]:
    """Store the settings (already validated) and audit what changed as {field: [old, new]}."""
    changes: dict[str, list[Any]] = {}
    with transaction.atomic():
        locked = Municipality.objects.select_for_update().get(pk=municipality.pk)
        for field in SETTINGS:
            if field not in values:
                continue
            old, new = getattr(locked, field), values[field]
            if field == "broadcast_slots":
                old, new = sorted(old), sorted(int(slot) for slot in new)
            if old != new:
                changes[field] = [old, new]
                setattr(locked, field, new)
        if changes:
            locked.full_clean()
            locked.save(update_fields=list(changes))
            record(
                "municipality.settings_changed",
                actor=by,
                target=f"municipality {locked.code}",
                municipality=locked,
                request=request,
                changes=changes,
            )
    municipality.refresh_from_db()
    return changes

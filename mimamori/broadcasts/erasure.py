"""A deregistered child's addresses leave the deliveries too, when the registry erases the child
(registry/retention.py, S10)."""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Exists, OuterRef, Value
from django.db.models.functions import Cast, Concat

from mimamori.broadcasts.models import Delivery, Recipient
from mimamori.registry.models import Registrant


def erase_deliveries(sender: Any, registrant: Registrant, **kwargs: Any) -> None:
    """Blank the address on past deliveries sent for this child only (a shared address stays:
    it is still a living sibling's). Rows and statuses stay, so sent/failed counts do too."""
    others = Recipient.objects.filter(delivery=OuterRef("pk")).exclude(registrant=registrant)
    # Unique per broadcast (one mail per address): "erased-<id>" keeps the rows distinct.
    Delivery.objects.filter(recipients__registrant=registrant).exclude(Exists(others)).update(
        email=Concat(Value("erased-"), Cast("pk", output_field=CharField()))
    )

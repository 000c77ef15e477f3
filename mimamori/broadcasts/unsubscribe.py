"""One-click unsubscribe (RFC 8058, B3): a broadcast mail's List-Unsubscribe link turns
連絡メールを受信する off for the children that mail names, as the portal's オプション does.

The link carries the delivery sealed under a key of its own (mail/verp.py), so it is as
unguessable as the confirmation link and names nobody.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from mimamori.audit import log as audit
from mimamori.broadcasts.models import Delivery, Recipient
from mimamori.mail import verp
from mimamori.registry.models import Registrant, RegistrantStatus
from mimamori.registry.registrants import registrant_target


def find(token: str) -> Delivery | None:
    """The mail an unsubscribe link belongs to, or None for a link we did not make."""
    sealed = verp.unseal(token, purpose="unsubscribe")
    if sealed is None or sealed[0] != verp.DELIVERY:
        return None
    return Delivery.objects.select_related("broadcast", "school__municipality").filter(pk=sealed[1]).first()


def unsubscribe(delivery: Delivery, request: HttpRequest | None = None) -> int:
    """Turn broadcast mail off for the active registrants the mail names; returns how many
    were still receiving it (a second press changes nothing)."""
    named = Recipient.objects.filter(delivery=delivery).values("registrant_id")
    with transaction.atomic():
        receiving = list(
            Registrant.objects.select_for_update()
            .select_related("school", "account")
            .filter(pk__in=named, status=RegistrantStatus.ACTIVE, receive_broadcasts=True)
        )
        for registrant in receiving:
            registrant.receive_broadcasts = False
            registrant.save(update_fields=["receive_broadcasts", "updated_at"])
            audit.record(
                "registrant.option_changed",
                target=registrant_target(registrant),
                municipality=registrant.school.municipality_id,
                request=request,
                receive_broadcasts=False,
                via="one-click unsubscribe",
                broadcast=delivery.broadcast_id,
            )
    return len(receiving)

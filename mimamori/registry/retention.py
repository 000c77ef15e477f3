"""Erasing a deregistered child's personal data once the retention period is over (S10).

The registrant row itself stays: past broadcasts' Recipient and Receipt rows point at it, and
their counters (Broadcast.registrant_count, AudienceGroup) were written when the broadcast went
out, so the statistics stay exactly as they were. What goes is everything that names a person:
the child's name, the addresses (also the copies in past deliveries that served nobody else),
the free-text notes of the requests, and the login ID of the guardian account. Apps above the
registry that keep copies of a child's data (a delivery's address) erase theirs when told by
the ``erasing`` signal, in the same transaction.
"""

from __future__ import annotations

import datetime
import secrets

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Lower
from django.dispatch import Signal
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.mail.models import OutgoingMail
from mimamori.registry import reachtests
from mimamori.registry.models import (
    Address,
    AddressFailure,
    DeregistrationRequest,
    Registrant,
    RegistrantStatus,
)

ERASED_NAME = "（削除済み）"
BATCH = 200

# Sent with ``registrant`` while it is being erased, inside the erasing transaction.
erasing = Signal()


def erasable(now: datetime.datetime | None = None) -> list[int]:
    cutoff = (now or timezone.now()) - datetime.timedelta(days=settings.MIMAMORI_RETENTION_DAYS)
    return list(
        Registrant.objects.filter(
            status=RegistrantStatus.DEREGISTERED, erased_at__isnull=True, deregistered_at__lt=cutoff
        ).values_list("pk", flat=True)[:BATCH]
    )


def erase_expired(now: datetime.datetime | None = None) -> int:
    """Erase up to a batch of registrants whose retention period is over; returns how many.

    The sweep calls this every few seconds: with nothing to do it is one indexed query.
    """
    ids = erasable(now)
    for registrant_id in ids:
        erase(registrant_id)
    return len(ids)


def erase(registrant_id: int) -> None:
    with transaction.atomic():
        registrant = (
            Registrant.objects.select_for_update()
            .select_related("account", "school")
            .filter(pk=registrant_id, erased_at__isnull=True)
            .first()
        )
        if registrant is None:
            return  # another sweep erased it meanwhile
        erasing.send(sender=Registrant, registrant=registrant)
        _erase_failures(registrant)
        reachtests.forget(registrant)
        Address.objects.filter(registrant=registrant).delete()
        DeregistrationRequest.objects.filter(registrant=registrant).update(note="")
        registrant.child_name = ERASED_NAME
        registrant.child_name_kana = ""
        registrant.registration_code_digest = ""
        registrant.erased_at = timezone.now()
        registrant.save(
            update_fields=[
                "child_name",
                "child_name_kana",
                "registration_code_digest",
                "erased_at",
                "updated_at",
            ]
        )
        _anonymise(registrant.account)
        record(
            "registrant.erased",
            target=f"registrant {registrant.pk}",
            municipality=registrant.school.municipality_id,
        )


def _erase_failures(registrant: Registrant) -> None:
    """The bounce history of the child's addresses that no other registrant holds, and the
    record of the mails sent about the child (登録完了メール; 到達テスト: reachtests.forget)."""
    own = {
        email.lower()
        for email in Address.objects.filter(registrant=registrant).values_list("email", flat=True)
    }
    kept = Address.objects.exclude(registrant=registrant).annotate(key=Lower("email")).filter(key__in=own)
    AddressFailure.objects.filter(email__in=own - set(kept.values_list("key", flat=True))).delete()
    OutgoingMail.objects.filter(target=f"registrant {registrant.pk}").delete()


def _anonymise(account: User) -> None:
    # Unguessable, so the old login ID can be handed out again and nobody can sign in as this.
    account.username = f"erased-{secrets.token_hex(16)}"
    account.first_name = account.last_name = account.email = ""
    account.set_unusable_password()
    account.is_active = False
    account.save(update_fields=["username", "first_name", "last_name", "email", "password", "is_active"])

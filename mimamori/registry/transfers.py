"""転校 within the city (S11): the new school registers the child again.

The old registration stays deregistered (its history belongs to the old school); the new one
gets a new login ID and registration letter like any enrolment. When the old school recorded
the transfer, its addresses can be copied so the guardian need not type them again.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.registry.models import DeregistrationRequest, School
from mimamori.registry.registrants import Enrolment, enrol


def transfer_in(
    school: School,
    *,
    child_name: str,
    grade: int,
    class_name: str,
    by: User,
    child_name_kana: str = "",
    previous: DeregistrationRequest | None = None,
    copy_addresses: bool = False,
    request: HttpRequest | None = None,
) -> Enrolment:
    """Enrol a child moving in from another school. ``previous`` must come from
    access.incoming_transfers_for (an approved transfer into this school, same city)."""
    addresses: list[str | None] = []
    if copy_addresses:
        if previous is None:
            raise ValidationError({"copy_addresses": _("Choose the transfer whose addresses to copy.")})
        old = previous.registrant
        # Addresses never cross a city boundary: another municipality's data is not ours to copy.
        if old.school.municipality_id != school.municipality_id or old.erased_at is not None:
            raise ValidationError({"copy_addresses": _("The addresses of this transfer cannot be copied.")})
        addresses = list(old.addresses_by_slot().values())
    with transaction.atomic():
        enrolment = enrol(
            school,
            child_name=child_name,
            child_name_kana=child_name_kana,
            grade=grade,
            class_name=class_name,
            addresses=addresses,
        )
        if previous is not None:
            updated = DeregistrationRequest.objects.filter(
                pk=previous.pk, new_registrant__isnull=True
            ).update(new_registrant=enrolment.registrant)
            if not updated:
                raise ValidationError(_("This transfer has already been registered."))
        record(
            "registrant.transferred_in",
            actor=by,
            target=f"registrant {enrolment.registrant.pk}",
            municipality=school.municipality_id,
            request=request,
            previous_registrant=previous.registrant_id if previous else None,
            addresses_copied=bool(addresses),
        )
    return enrolment

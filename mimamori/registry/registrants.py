"""Verbs on registrants: enrol a child, finish the guardian's first login."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction

from mimamori.accounts.models import User
from mimamori.registry.addresses import clean_address_slots
from mimamori.registry.models import Address, Registrant, School, new_login_id


@dataclass(frozen=True)
class Enrolment:
    registrant: Registrant
    registration_code: str  # shown once: on the registration letter or in the API reply


def _new_account() -> User:
    for _attempt in range(20):
        login_id = new_login_id()
        try:
            with transaction.atomic():
                user = User(username=login_id)
                # The guardian sets the password at the first login, with the registration code.
                user.set_unusable_password()
                user.save()
                return user
        except IntegrityError:
            continue
    raise RuntimeError("could not find a free login ID")


def enrol(
    school: School,
    *,
    child_name: str,
    grade: int,
    class_name: str,
    child_name_kana: str = "",
    addresses: Sequence[str | None] = (),
    receive_broadcasts: bool = True,
) -> Enrolment:
    """Create a registrant with a new login ID and a one-time registration code.

    Addresses given here (by staff or a roster) are stored without a 登録完了メール: the
    guardian has not asked for anything yet. Raises ValidationError for bad addresses.
    """
    cleaned = clean_address_slots(list(addresses))
    with transaction.atomic():
        registrant = Registrant(
            school=school,
            account=_new_account(),
            child_name=child_name.strip(),
            child_name_kana=child_name_kana.strip(),
            grade=grade,
            class_name=class_name.strip(),
            receive_broadcasts=receive_broadcasts,
        )
        code = registrant.issue_registration_code()
        registrant.full_clean(exclude=["account"])
        registrant.save()
        Address.objects.bulk_create(
            Address(registrant=registrant, slot=slot, email=email) for slot, email in cleaned.items() if email
        )
    return Enrolment(registrant, code)

"""Verbs on registrants: enrol a child, finish the guardian's first login, deregister."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.registry.addresses import clean_address_slots
from mimamori.registry.models import Address, Registrant, RegistrantStatus, School, new_login_id


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
        # Field validators cover the grade range; skipping the constraint and foreign-key
        # checks saves two queries per child, which a 1,000-child roster import notices.
        registrant.full_clean(exclude=["account", "school"], validate_constraints=False)
        registrant.save()
        Address.objects.bulk_create(
            Address(registrant=registrant, slot=slot, email=email) for slot, email in cleaned.items() if email
        )
    return Enrolment(registrant, code)


def deregister(registrant: Registrant) -> None:
    """Take the child off the service: nothing more is sent and the guardian login stops working.

    The row and its addresses stay, so past broadcasts and receipts still name who got them.
    Deregistering twice changes nothing.
    """
    if not registrant.is_active:
        return
    with transaction.atomic():
        registrant.status = RegistrantStatus.DEREGISTERED
        registrant.deregistered_at = timezone.now()
        # A pending registration code must not let anyone start a login on a closed account.
        registrant.registration_code_digest = ""
        registrant.save(update_fields=["status", "deregistered_at", "registration_code_digest", "updated_at"])
        account = registrant.account
        account.is_active = False
        account.save(update_fields=["is_active"])


def find_first_login(login_id: str, code: str) -> Registrant | None:
    """The active registrant with this login ID whose unused registration code is ``code``."""
    registrant = (
        Registrant.objects.select_related("account", "school__municipality")
        .filter(account__username=login_id, account__role="", account__is_active=True)
        .first()
    )
    if registrant is None or not registrant.is_active or not registrant.registration_code_matches(code):
        return None
    return registrant


def complete_first_login(registrant: Registrant, code: str, password: str) -> User | None:
    """Set the guardian's password and spend the registration code; the caller validated the password.

    Returns the account, or None when the code was spent in the meantime: the row is locked
    and the code checked again, so two people holding one letter cannot both use it.
    """
    with transaction.atomic():
        locked = Registrant.objects.select_for_update().select_related("account").get(pk=registrant.pk)
        if not locked.is_active or not locked.registration_code_matches(code):
            return None
        account = locked.account
        account.set_password(password)
        account.save(update_fields=["password"])
        locked.registration_code_digest = ""
        locked.save(update_fields=["registration_code_digest", "updated_at"])
    return account

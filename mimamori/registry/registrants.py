"""Verbs on registrants: enrol a child (or a roster batch of them), finish the guardian's first
login, deregister."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from mimamori.accounts.models import User
from mimamori.registry.addresses import clean_address_slots
from mimamori.registry.models import (
    SLOTS,
    Address,
    Registrant,
    RegistrantStatus,
    School,
    class_key,
    new_login_id,
    new_registration_codes,
)


@dataclass(frozen=True)
class Enrolment:
    registrant: Registrant
    registration_code: str  # shown once: on the registration letter or in the API reply


@dataclass(frozen=True, kw_only=True, slots=True)
class NewChild:
    """A child to enrol, as staff or a roster give it."""

    child_name: str
    grade: int
    class_name: str
    child_name_kana: str = ""
    # As clean_address_slots returns them, in slot order; "" for an empty slot.
    addresses: tuple[str, ...] = ()
    receive_broadcasts: bool = True
    tag_id: str = ""  # as registry/tags.py clean_tag returns it; unique in the school (checked by the caller)


class InvalidChild(ValidationError):
    """A child of a batch broke a model rule; ``index`` says which one."""

    def __init__(self, error: ValidationError, index: int) -> None:
        super().__init__(error)
        self.index = index


def enrol(
    school: School,
    *,
    child_name: str,
    grade: int,
    class_name: str,
    child_name_kana: str = "",
    addresses: Sequence[str | None] = (),
    receive_broadcasts: bool = True,
    tag_id: str = "",
) -> Enrolment:
    """Create a registrant with a new login ID and a one-time registration code.

    Addresses given here (by staff or a roster) are stored without a 登録完了メール: the
    guardian has not asked for anything yet. Raises ValidationError for bad addresses.
    """
    cleaned = clean_address_slots(list(addresses))
    child = NewChild(
        child_name=child_name,
        grade=grade,
        class_name=class_name,
        child_name_kana=child_name_kana,
        addresses=tuple(cleaned[slot] for slot in SLOTS),
        receive_broadcasts=receive_broadcasts,
        tag_id=tag_id,
    )
    return enrol_many(school, [child])[0]


def enrol_many(school: School, children: Sequence[NewChild]) -> list[Enrolment]:
    """Enrol ``children`` at ``school`` together, in the same few queries whatever their number
    (a roster import writes batches of a thousand this way).

    Raises InvalidChild, before writing anything, when a child breaks a model rule.
    """
    codes = new_registration_codes(len(children))
    registrants = []
    for index, (child, code) in enumerate(zip(children, codes, strict=True)):
        registrant = Registrant(
            school=school,
            child_name=child.child_name.strip(),
            child_name_kana=child.child_name_kana.strip(),
            grade=child.grade,
            class_name=class_key(child.class_name),
            receive_broadcasts=child.receive_broadcasts,
            tag_id=child.tag_id,
        )
        registrant.issue_registration_code(code)
        try:
            # Field validators cover the grade range; skipping the constraint and foreign-key
            # checks saves two queries per child, which a roster import notices.
            registrant.full_clean(exclude=["account", "school"], validate_constraints=False)
        except ValidationError as error:
            raise InvalidChild(error, index) from None
        registrants.append(registrant)
    with transaction.atomic():
        for registrant, account in zip(registrants, _new_accounts(len(children)), strict=True):
            registrant.account = account
        # PostgreSQL and SQLite (3.35+, which the confirmation SQL needs anyway) hand back the
        # new primary keys, so the addresses can refer to their registrants at once.
        Registrant.objects.bulk_create(registrants)
        Address.objects.bulk_create(
            Address(registrant=registrant, slot=slot, email=email)
            for registrant, child in zip(registrants, children, strict=True)
            for slot, email in zip(SLOTS, child.addresses, strict=False)
            if email
        )
    return [Enrolment(registrant, code) for registrant, code in zip(registrants, codes, strict=True)]


def _new_accounts(count: int) -> list[User]:
    """``count`` guardian accounts with fresh login IDs, for one batch of children."""
    for _attempt in range(20):
        accounts = [
            # The guardian sets the password at the first login, with the registration code.
            User(username=login_id, password=_unusable_password())
            for login_id in _free_login_ids(count)
        ]
        try:
            with transaction.atomic():
                return User.objects.bulk_create(accounts)
        except IntegrityError:
            # Another enrolment took one of these IDs after _free_login_ids looked: the
            # savepoint undid this batch's accounts, so draw the batch's IDs again.
            continue
    raise RuntimeError("could not find free login IDs")


def _free_login_ids(count: int) -> set[str]:
    """``count`` different login IDs that no user has, checked with one query (more only after
    a collision, which is rare while the registry holds far fewer than 90 million logins)."""
    free: set[str] = set()
    while len(free) < count:
        candidates: set[str] = set()
        while len(candidates) < count - len(free):
            login_id = new_login_id()
            if login_id not in free:
                candidates.add(login_id)
        taken = User.objects.filter(username__in=candidates).values_list("username", flat=True)
        free |= candidates.difference(taken)
    return free


def _unusable_password() -> str:
    # What User.set_unusable_password stores (make_password(None)): the prefix and 40 random
    # characters. make_password draws them one secrets.choice at a time, a third of the cost
    # of enrolling a roster's child; token_urlsafe gives 240 random bits in one read.
    return UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(30)


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
        # The IC tag goes back to the school, which may give it to another child (B6).
        registrant.tag_id = ""
        registrant.save(
            update_fields=["status", "deregistered_at", "registration_code_digest", "tag_id", "updated_at"]
        )
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


def registrant_target(registrant: Registrant) -> str:
    """How the audit log names a registrant: by login ID, never the child's name or an address,
    because the log outlives the erasure of a deregistered registrant's personal data."""
    return f"registrant {registrant.pk} ({registrant.account.username})"

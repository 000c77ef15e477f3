"""A guardian's way back in (P11): a password reset link by mail to a registered address.

The answer to a request is the same whether or not the login ID and address matched: the
view shows one page, and the mail itself is written by a task on the mail queue (so the
request does the same small work either way). The mail comes from the child's school, like
the registry's other mail, to that one address, with a one-time link (accounts/recovery.py).
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction

from mimamori import tasking
from mimamori.accounts import recovery
from mimamori.audit.log import record
from mimamori.mail import outbox
from mimamori.registry import mails
from mimamori.registry.models import Address, AddressStatus, Registrant, RegistrantStatus
from mimamori.registry.registrants import registrant_target

log = logging.getLogger(__name__)

PORTAL_RESET_PATH = "/portal/password-reset/"


def reset_url(token: str) -> str:
    # Absolute: read in a phone's mail app, away from any page that could supply a host.
    return f"{settings.BASE_URL}{PORTAL_RESET_PATH}{token}/"


def _find_address(login_id: str, email: str) -> Address | None:
    """The registered address ``email`` of the active guardian ``login_id``, if both match."""
    email = email.strip()
    if not login_id or not email:
        return None
    return (
        Address.objects.select_related("registrant__account", "registrant__school__municipality")
        .filter(
            registrant__account__username=login_id,
            registrant__account__role="",
            registrant__account__is_active=True,
            registrant__status=RegistrantStatus.ACTIVE,
            email__iexact=email,
        )
        .exclude(status=AddressStatus.SUPPRESSED)
        .order_by("slot")
        .first()
    )


def request_password_reset(login_id: str, email: str) -> bool:
    """Queue a reset mail if ``email`` is registered for the guardian ``login_id``; audited
    either way (the log is the staff's, not the requester's). Returns whether it matched,
    for the log and tests only: the caller must answer the same either way."""
    from mimamori.registry.tasks import send_password_reset

    address = _find_address(login_id, email)
    registrant = address.registrant if address is not None else None
    with transaction.atomic():
        if address is not None:
            tasking.enqueue(send_password_reset, address.registrant_id, address.slot, queue=tasking.MAIL)
        record(
            "password_reset.requested",
            actor_name=login_id[:150],
            target=registrant_target(registrant) if registrant else f"user {login_id[:100]}",
            municipality=registrant.school.municipality if registrant else None,
            matched=address is not None,
            slot=address.slot if address is not None else None,
        )
    return address is not None


def post_password_reset(registrant_id: int, slot: int) -> bool:
    """The task's work: issue a link and write its mail to the outbox, unless the slot changed,
    the registrant left, or the login already got MIMAMORI_RESET_ACCOUNT_LIMIT links this hour
    (so a stranger who knows an address cannot fill the guardian's phone with mail)."""
    address = (
        Address.objects.select_related("registrant__account", "registrant__school__municipality")
        .filter(registrant_id=registrant_id, slot=slot, registrant__status=RegistrantStatus.ACTIVE)
        .exclude(status=AddressStatus.SUPPRESSED)
        .first()
    )
    if address is None or not address.registrant.account.is_active:
        log.info("password reset mail skipped: registrant %s slot %s changed or gone", registrant_id, slot)
        return False
    registrant = address.registrant
    account = registrant.account
    if recovery.resets_since(account, timedelta(hours=1)) >= settings.MIMAMORI_RESET_ACCOUNT_LIMIT:
        log.info("password reset mail skipped: registrant %s reached the hourly limit", registrant_id)
        return False
    minutes = settings.MIMAMORI_PASSWORD_RESET_MINUTES
    municipality = registrant.school.municipality
    with transaction.atomic():
        token = recovery.issue_reset(account, timedelta(minutes=minutes))
        outbox.post(
            functools.partial(mails.password_reset, registrant, address.email, reset_url(token), minutes),
            to=address.email,
            kind="password_reset",
            target=f"registrant {registrant.pk}",
            municipality=municipality,
            domain=municipality.mail_domain,
        )
    return True


def find_guardian_reset(token: str) -> Registrant | None:
    """The registrant whose guardian the link ``token`` resets, while it works."""
    reset = recovery.find_reset(token)
    if reset is None:
        return None
    return (
        Registrant.objects.select_related("school__municipality", "account")
        .filter(account=reset.user, status=RegistrantStatus.ACTIVE)
        .first()
    )


def complete_guardian_reset(token: str, password: str) -> Registrant | None:
    """Set the guardian's new password through the link (spent at once); audited."""
    registrant = find_guardian_reset(token)
    if registrant is None:
        return None
    account = recovery.use_reset(token, password)
    if account is None:
        return None
    record(
        "password_reset.completed",
        actor_name=account.get_username(),
        target=registrant_target(registrant),
        municipality=registrant.school.municipality,
    )
    return registrant

"""Background tasks of the registry. Tasks carry IDs; the database row is the truth."""

from __future__ import annotations

import functools
import logging

from mimamori.mail import outbox
from mimamori.registry import mails, reachtests
from mimamori.registry.models import Address, AddressStatus, Registrant, RegistrantStatus
from mimamori.tasking import task

log = logging.getLogger(__name__)


@task(queue_name="mail")
def send_registration_complete(registrant_id: int, slot: int, email: str) -> bool:
    """Queue the 登録完了メール for one slot (mail/outbox.py), if that slot still holds ``email``.

    If the guardian changed the slot again before this ran, a newer task covers the newer
    address and this one has nothing to prove; a deregistered registrant receives nothing.
    """
    still_wanted = Address.objects.filter(
        registrant_id=registrant_id, slot=slot, email=email, registrant__status=RegistrantStatus.ACTIVE
    ).exclude(status=AddressStatus.SUPPRESSED)
    if not still_wanted.exists():
        log.info("registration mail skipped: registrant %s slot %s changed or gone", registrant_id, slot)
        return False
    registrant = Registrant.objects.select_related("school__municipality").get(pk=registrant_id)
    municipality = registrant.school.municipality
    outbox.post(
        functools.partial(mails.registration_complete, registrant, slot, email),
        to=email,
        kind="registration_complete",
        target=f"registrant {registrant.pk}",
        municipality=municipality,
        domain=municipality.mail_domain,
    )
    return True


@task(queue_name="default")
def post_reach_test(reach_test_id: int) -> int:
    """Write a 到達テスト's mails into the outbox (registry/reachtests.py); a no-op once done."""
    return reachtests.post(reach_test_id)


@task(queue_name="mail")
def send_password_reset(registrant_id: int, slot: int) -> bool:
    """Issue a password reset link and queue its mail to the address at ``slot`` (registry/recovery.py)."""
    # Imported here: recovery uses registrants, which imports this module (through addresses).
    from mimamori.registry import recovery

    return recovery.post_password_reset(registrant_id, slot)

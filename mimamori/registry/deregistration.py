"""登録解除届 (S10) and 転校 (S11): a guardian or staff files the request, staff decide.

Approval is what deregisters: from then on the child is left out of every audience (they all
filter active registrants) and the guardian's login stops working. A request is decided once;
a second approve or reject of the same request changes nothing.
"""

from __future__ import annotations

import datetime
import functools

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.mail import outbox
from mimamori.registry import mails
from mimamori.registry.models import (
    AddressStatus,
    DeregistrationReason,
    DeregistrationRequest,
    DeregistrationSource,
    DeregistrationStatus,
    Registrant,
    School,
)
from mimamori.registry.registrants import deregister


def destination_schools(registrant: Registrant) -> list[School]:
    """Where a transfer within the city can go: the other schools of the same municipality."""
    return list(
        School.objects.filter(municipality_id=registrant.school.municipality_id)
        .exclude(pk=registrant.school_id)
        .order_by("name")
    )


def _check_destination(registrant: Registrant, reason: str, destination: School | None) -> School:
    """The new school of a transfer within the city: required, and another school of the city,
    since that is where the child is registered again (S11)."""
    if destination is None:
        raise ValidationError(
            {
                "destination_school": _(
                    "For a transfer within the city, please choose the new school: "
                    "it registers the child again."
                )
            }
        )
    if destination.pk not in {s.pk for s in destination_schools(registrant)}:
        raise ValidationError({"destination_school": _("Please choose another school in the same city.")})
    return destination


def check_destination(registrant: Registrant, reason: str, destination: School | None) -> School | None:
    if reason != DeregistrationReason.TRANSFER_WITHIN:
        return None  # a destination only means something for a transfer within the city
    return _check_destination(registrant, reason, destination)


def pending_request(registrant: Registrant) -> DeregistrationRequest | None:
    return registrant.deregistration_requests.filter(status=DeregistrationStatus.PENDING).first()


def submit_request(
    registrant: Registrant,
    *,
    reason: str,
    effective_on: datetime.date,
    by: User,
    note: str = "",
    destination_school: School | None = None,
    request: HttpRequest | None = None,
) -> DeregistrationRequest:
    """File a request: online when ``by`` is the guardian, a paper form when ``by`` is staff.

    Raises ValidationError when the child is no longer registered or a request is already waiting.
    """
    if not registrant.is_active:
        raise ValidationError(_("This registration has already been cancelled."))
    if reason not in DeregistrationReason.values:
        raise ValidationError({"reason": _("Please choose a reason.")})
    destination = check_destination(registrant, reason, destination_school)
    source = DeregistrationSource.PAPER if by.role else DeregistrationSource.ONLINE
    try:
        with transaction.atomic():
            filed = DeregistrationRequest.objects.create(
                registrant=registrant,
                reason=reason,
                effective_on=effective_on,
                note=note.strip(),
                destination_school=destination,
                source=source,
                submitted_by=by,
            )
    except IntegrityError:
        # The partial unique index: a request for this child is already waiting.
        raise ValidationError(
            _("A deregistration request has already been submitted and is waiting for the school.")
        ) from None
    record(
        "deregistration.requested",
        actor=by,
        target=f"registrant {registrant.pk}",
        municipality=registrant.school.municipality_id,
        request=request,
        request_id=filed.pk,
        reason=reason,
        source=source,
    )
    return filed


def _claim(filed: DeregistrationRequest) -> DeregistrationRequest | None:
    """The request, locked, if it is still waiting; None when someone decided it meanwhile."""
    locked = (
        DeregistrationRequest.objects.select_for_update()
        .filter(pk=filed.pk, status=DeregistrationStatus.PENDING)
        .first()
    )
    return locked


def approve(
    filed: DeregistrationRequest,
    staff: User,
    *,
    destination_school: School | None = None,
    request: HttpRequest | None = None,
) -> bool:
    """Deregister the child. False when the request was already decided."""
    registrant = filed.registrant
    destination = check_destination(registrant, filed.reason, destination_school or filed.destination_school)
    with transaction.atomic():
        locked = _claim(filed)
        if locked is None:
            return False
        locked.status = DeregistrationStatus.APPROVED
        locked.decided_by = staff
        locked.decided_at = timezone.now()
        locked.destination_school = destination
        locked.save(update_fields=["status", "decided_by", "decided_at", "destination_school"])
        deregister(registrant)
        _tell_guardian(locked)
        record(
            "registrant.deregistered",
            actor=staff,
            target=f"registrant {registrant.pk}",
            municipality=registrant.school.municipality_id,
            request=request,
            request_id=locked.pk,
            reason=locked.reason,
            source=locked.source,
            destination_school=destination.pk if destination else None,
        )
    filed.refresh_from_db()
    return True


def reject(filed: DeregistrationRequest, staff: User, *, request: HttpRequest | None = None) -> bool:
    """Keep the child registered. False when the request was already decided."""
    with transaction.atomic():
        locked = _claim(filed)
        if locked is None:
            return False
        locked.status = DeregistrationStatus.REJECTED
        locked.decided_by = staff
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        _tell_guardian(locked)
        record(
            "deregistration.rejected",
            actor=staff,
            target=f"registrant {filed.registrant_id}",
            municipality=filed.registrant.school.municipality_id,
            request=request,
            request_id=locked.pk,
        )
    filed.refresh_from_db()
    return True


def withdraw(filed: DeregistrationRequest, guardian: User, *, request: HttpRequest | None = None) -> bool:
    """The guardian takes back a request still waiting. False when staff decided it meanwhile."""
    with transaction.atomic():
        locked = _claim(filed)
        if locked is None:
            return False
        locked.status = DeregistrationStatus.WITHDRAWN
        locked.decided_by = guardian
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        record(
            "deregistration.withdrawn",
            actor=guardian,
            target=f"registrant {filed.registrant_id}",
            municipality=filed.registrant.school.municipality_id,
            request=request,
            request_id=locked.pk,
        )
    filed.refresh_from_db()
    return True


def _tell_guardian(decided: DeregistrationRequest) -> None:
    """The decision, mailed in the deciding transaction to each address the child has (slots
    1 to 4, once per address, none that is suppressed): a guardian who filed online waits for it,
    and one whose paper form staff entered learns that mail stops."""
    registrant = decided.registrant
    municipality = registrant.school.municipality
    sent: set[str] = set()
    for address in registrant.addresses.exclude(status=AddressStatus.SUPPRESSED).order_by("slot"):
        if address.email.lower() in sent:
            continue
        sent.add(address.email.lower())
        outbox.post(
            functools.partial(mails.deregistration_decided, registrant, decided, address.email),
            to=address.email,
            kind="deregistration_decided",
            target=f"registrant {registrant.pk}",
            municipality=municipality,
            domain=municipality.mail_domain,
        )

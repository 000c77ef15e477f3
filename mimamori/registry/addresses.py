"""Address rules (S8) and the one verb that changes a registrant's addresses.

Any address that can be delivered to is accepted: parents, grandparents, work, PCs.
What is refused is what an SMTP server would refuse or mangle: forms outside RFC 5321/5322
that some old carrier addresses still have (``a..b@docomo.ne.jp``, ``abc.@ezweb.ne.jp``),
over-long input, and the same address twice for one child. Every refusal says why and what
the guardian can do, in the guardian's language.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _
from email_validator import EmailNotValidError, EmailSyntaxError, validate_email

from mimamori import tasking
from mimamori.registry import health
from mimamori.registry.models import SLOTS, Address, AddressStatus, Registrant
from mimamori.registry.tasks import send_registration_complete

MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
MAX_ADDRESS = 254  # RFC 5321 path limit less the angle brackets


def _explain(error: EmailNotValidError, value: str) -> str:
    text = str(error)
    if "two periods in a row" in text:
        return _(
            "This address has two dots in a row (..). Addresses like this were once issued by "
            "some mobile carriers but do not follow the Internet mail standard, so mail to it may "
            "not arrive. Please change the address with your carrier and register the new one, "
            "or register another address."
        )
    if "period immediately before the @-sign" in text or "cannot end with a period" in text:
        return _(
            "This address has a dot (.) just before the @. Addresses like this were once issued by "
            "some mobile carriers but do not follow the Internet mail standard, so mail to it may "
            "not arrive. Please change the address with your carrier and register the new one, "
            "or register another address."
        )
    if "start with a period" in text:
        return _(
            "This address starts with a dot (.), which the Internet mail standard does not allow. "
            "Please check the address, or register another one."
        )
    if "must have an @-sign" in text or "must have only one @" in text.lower():
        return _(
            "This is not a mail address: it needs exactly one @ with a name before it and a domain after it."
        )
    if "characters" in text or "not allowed" in text:
        return _(
            "This address contains characters that cannot be used in a mail address "
            "(spaces, full-width characters or symbols). Please type it with half-width letters."
        )
    if "after the @-sign" in text or "domain" in text.lower():
        return _(
            "The part after the @ (the domain) is not valid. Please check it, for example "
            "docomo.ne.jp or ezweb.ne.jp."
        )
    return _("This mail address is not valid. Please check it and try again.")


def _full_width(value: str) -> str | None:
    """The message for an address typed with full-width characters (＠, ａ, １, ．, the
    ideographic space), which a Japanese phone keyboard offers first; None when there are none.

    It names the characters and shows the half-width form, but does not store that form: the
    guardian checks it and types it, so a mistyped address is not registered on their behalf.
    """
    wide = []
    for char in value:
        half = unicodedata.normalize("NFKC", char)
        if char != half and half.isascii() and char not in wide:
            wide.append(char)
    if not wide:
        return None
    chars = _(", ").join(_("full-width space") if char == "\u3000" else char for char in wide[:5])
    half_width = "".join(unicodedata.normalize("NFKC", char) for char in value).replace(" ", "")
    if "＠" in wide:
        message = _(
            "The @ in this address is a full-width character (＠). Mail addresses are typed in "
            "half-width characters only."
        )
    else:
        message = _(
            "This address contains full-width characters (%(chars)s). Mail addresses are typed in "
            "half-width characters only."
        ) % {"chars": chars}
    return (
        message
        + " "
        + _("In half-width characters it reads: %(address)s. If that is right, please type it so.")
        % {"address": half_width}
    )


def normalise_address(value: str) -> str:
    """Return the address as it will be stored, or raise ValidationError with a clear message."""
    value = value.strip()
    if not value:
        raise ValidationError(_("Please enter a mail address."), code="required")
    full_width = _full_width(value)
    if full_width:
        raise ValidationError(full_width, code="full_width")
    if len(value) > MAX_ADDRESS:
        raise ValidationError(
            _("This address is too long (at most %(max)d characters).") % {"max": MAX_ADDRESS},
            code="too_long",
        )
    if "@" in value and len(value.rsplit("@", 1)[0]) > MAX_LOCAL_PART:
        raise ValidationError(
            _("The part before the @ is too long (at most %(max)d characters).") % {"max": MAX_LOCAL_PART},
            code="too_long",
        )
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailSyntaxError as error:
        raise ValidationError(_explain(error, value), code="invalid") from error
    except EmailNotValidError as error:
        raise ValidationError(_explain(error, value), code="invalid") from error
    return result.ascii_email or result.normalized


@dataclass(frozen=True)
class AddressChange:
    slot: int
    email: str  # the new address; "" when the slot was cleared


def clean_address_slots(values: Sequence[str | None]) -> dict[int, str]:
    """Validate up to four slot values; return {slot: address or ""}.

    Raises ValidationError whose error_dict maps ``address<slot>`` to the message for that
    slot, so a form can show each message beside its field.
    """
    if len(values) > len(SLOTS):
        raise ValidationError(_("A child can have at most four mail addresses."), code="too_many")
    padded = list(values) + [None] * (len(SLOTS) - len(values))
    cleaned: dict[int, str] = {}
    errors: dict[str, list[ValidationError]] = {}
    seen: dict[str, int] = {}
    for slot, raw in zip(SLOTS, padded, strict=True):
        if raw is None or str(raw).strip() == "":
            cleaned[slot] = ""
            continue
        try:
            address = normalise_address(str(raw))
        except ValidationError as error:
            errors[f"address{slot}"] = [error]
            continue
        key = address.lower()
        if key in seen:
            errors[f"address{slot}"] = [
                ValidationError(
                    _(
                        "This address is already registered in address %(slot)d. "
                        "Each address is needed only once."
                    )
                    % {"slot": seen[key]},
                    code="duplicate",
                )
            ]
            continue
        seen[key] = slot
        cleaned[slot] = address
    if errors:
        raise ValidationError(errors)
    return cleaned


def set_addresses(registrant: Registrant, values: Sequence[str | None]) -> list[AddressChange]:
    """Replace the registrant's four slots with ``values``, all or nothing.

    Each newly set or changed address gets the 登録完了メール (S7); it is enqueued in the same
    transaction, so the mail exists exactly when the change does.
    """
    cleaned = clean_address_slots(values)
    changes: list[AddressChange] = []
    with transaction.atomic():
        current = {a.slot: a for a in Address.objects.select_for_update().filter(registrant=registrant)}
        # Clear vacated or changed slots first, so moving an address from slot 2 to slot 1
        # does not trip the per-registrant uniqueness constraint half-way.
        for slot, address in current.items():
            if address.email != cleaned[slot]:
                address.delete()
        for slot in SLOTS:
            new = cleaned[slot]
            old = current[slot].email if slot in current else ""
            # The same address saved again while mail to it fails is the guardian saying it
            # works now (a full mailbox emptied, a filter fixed): it is tried again.
            again = new == old and bool(new) and current[slot].status != AddressStatus.OK
            if new == old and not again:
                continue
            changes.append(AddressChange(slot, new))
            if new and not again:
                Address.objects.create(registrant=registrant, slot=slot, email=new)
        for change in changes:
            if change.email:
                health.reset(change.email)
                tasking.enqueue(
                    send_registration_complete, registrant.pk, change.slot, change.email, queue=tasking.MAIL
                )
    return changes

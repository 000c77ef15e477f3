"""The support desk's verbs: a guardian submits an inquiry, staff answer it.

Abuse resistance: every field has a length limit, and one network address or one registrant
may send at most MIMAMORI_INQUIRY_LIMIT_PER_HOUR inquiries an hour. The limit is counted in
the inquiry table itself, so it holds across processes and machines without a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori import tasking
from mimamori import text as rule  # `text` is the answer's text below
from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.registry.addresses import normalise_address
from mimamori.registry.models import Municipality, Registrant
from mimamori.support import tasks
from mimamori.support.models import MAX_ANSWER, MAX_BODY, MAX_NAME, MAX_SUBJECT, Inquiry, InquiryStatus


class InquiryRefused(Exception):
    """Too many inquiries: the message says so in the guardian's language."""


@dataclass(frozen=True)
class Draft:
    name: str
    subject: str
    body: str
    reply_to: str = ""


def limit_per_hour() -> int:
    return int(getattr(settings, "MIMAMORI_INQUIRY_LIMIT_PER_HOUR", 5))


def _check_lengths(draft: Draft) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for field, value, limit, multiline in (
        ("name", draft.name, MAX_NAME, False),
        ("subject", draft.subject, MAX_SUBJECT, False),
        ("body", draft.body, MAX_BODY, True),
        ("reply_to", draft.reply_to, 254, False),
    ):
        # The input rule first: a line break in the subject would split the copy's header.
        if problem := rule.problem(value, multiline=multiline):
            errors[field] = [str(problem)]
        elif field == "reply_to":
            continue  # optional; its form is checked with the address rules below
        elif not value.strip():
            errors[field] = [_("This field is required.")]
        elif len(value) > limit:
            errors[field] = [
                _("Please keep this to %(max)d characters (now %(count)d).")
                % {"max": limit, "count": len(value)}
            ]
    return errors


def _reply_address(draft: Draft, registrant: Registrant | None) -> str:
    if draft.reply_to.strip():
        return normalise_address(draft.reply_to)
    if registrant is None:
        raise ValidationError(
            _("Please enter the mail address the answer should be sent to."), code="required"
        )
    if not any(registrant.addresses_by_slot().values()):
        raise ValidationError(
            _("No mail address is registered yet. Please enter the address the answer should be sent to."),
            code="required",
        )
    return ""


def _too_many(ip_address: str | None, registrant: Registrant | None, since: object) -> bool:
    limit = limit_per_hour()
    recent = Inquiry.objects.filter(created_at__gte=since)
    if recent.filter(ip_address=ip_address).count() >= limit:
        return True
    return registrant is not None and recent.filter(registrant=registrant).count() >= limit


def submit_inquiry(
    municipality: Municipality,
    draft: Draft,
    *,
    registrant: Registrant | None = None,
    ip_address: str | None = None,
) -> Inquiry:
    """Store an inquiry and queue its copy to the support address and the acknowledgement
    (受付番号) to the guardian.

    Raises ValidationError (keyed by field) for bad input and InquiryRefused over the limit.
    """
    errors = _check_lengths(draft)
    reply_to = ""
    try:
        if "reply_to" not in errors:
            reply_to = _reply_address(draft, registrant)
    except ValidationError as error:
        errors["reply_to"] = list(error.messages)
    if errors:
        raise ValidationError(errors)
    if registrant is not None and registrant.school.municipality_id != municipality.pk:
        raise ValueError("a logged-in guardian asks their own municipality's desk")
    with transaction.atomic():
        # Lock the municipality row so two simultaneous submissions cannot both slip under
        # the limit (on SQLite the IMMEDIATE transaction already serialises writers).
        Municipality.objects.select_for_update().filter(pk=municipality.pk).first()
        if _too_many(ip_address, registrant, timezone.now() - timedelta(hours=1)):
            raise InquiryRefused(
                _(
                    "You have sent too many inquiries in the last hour (at most %(limit)d). "
                    "Please wait a while and try again, or telephone the support desk."
                )
                % {"limit": limit_per_hour()}
            )
        inquiry = Inquiry.objects.create(
            municipality=municipality,
            registrant=registrant,
            name=draft.name.strip(),
            reply_to=reply_to,
            subject=draft.subject.strip(),
            body=draft.body.strip(),
            ip_address=ip_address,
        )
        if municipality.support_email:
            tasking.enqueue(tasks.send_inquiry_copy, inquiry.pk, queue=tasking.MAIL)
        if inquiry.answer_address():
            tasking.enqueue(tasks.send_inquiry_acknowledgement, inquiry.pk, queue=tasking.MAIL)
    return inquiry


class AlreadyAnswered(Exception):
    pass


def answer(inquiry: Inquiry, staff: User, text: str, *, request: object = None) -> Inquiry:
    """Record the staff member's answer and queue it to the guardian's address.

    Raises ValidationError for an empty or over-long answer and AlreadyAnswered if someone
    else answered first (the conditional UPDATE lets only one answer through).
    """
    text = text.strip()
    if not text:
        raise ValidationError({"answer": [_("Please write an answer.")]})
    if problem := rule.problem(text, multiline=True):
        raise ValidationError({"answer": [str(problem)]})
    if len(text) > MAX_ANSWER:
        raise ValidationError(
            {
                "answer": [
                    _("Please keep this to %(max)d characters (now %(count)d).")
                    % {"max": MAX_ANSWER, "count": len(text)}
                ]
            }
        )
    now = timezone.now()
    with transaction.atomic():
        won = Inquiry.objects.filter(pk=inquiry.pk, status=InquiryStatus.OPEN).update(
            status=InquiryStatus.ANSWERED, answer=text, answered_by=staff, answered_at=now
        )
        if not won:
            raise AlreadyAnswered(_("This inquiry has already been answered."))
        inquiry.refresh_from_db()
        record(
            "inquiry.answered",
            actor=staff,
            target=f"inquiry {inquiry.pk}",
            municipality=inquiry.municipality_id,
            request=request,  # type: ignore[arg-type]
        )
        if inquiry.answer_address():
            tasking.enqueue(tasks.send_inquiry_answer, inquiry.pk, queue=tasking.MAIL)
    return inquiry

"""Background mail of the support desk, handed to the outbox (mail/outbox.py), which sends and
retries it. Tasks carry IDs; the inquiry row is the truth, and a timestamp on it, set in the
transaction that queues the mail, makes a redelivered task a no-op."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.core.mail import EmailMessage
from django.db import transaction
from django.utils import timezone

from mimamori.mail import outbox
from mimamori.support import mails
from mimamori.support.models import Inquiry, InquiryStatus
from mimamori.tasking import task

log = logging.getLogger(__name__)


def _inquiry(inquiry_id: int) -> Inquiry | None:
    return (
        Inquiry.objects.select_related("municipality", "registrant__school__municipality")
        .filter(pk=inquiry_id)
        .first()
    )


@task(queue_name="mail")
def send_inquiry_copy(inquiry_id: int) -> bool:
    """Send a copy of a new inquiry to the municipality's support address."""
    inquiry = _inquiry(inquiry_id)
    if inquiry is None or inquiry.copied_at is not None or not inquiry.municipality.support_email:
        return False
    with transaction.atomic():  # queued and marked together: a task run twice queues one copy
        _post(
            functools.partial(mails.inquiry_copy, inquiry),
            inquiry.municipality.support_email,
            inquiry,
            "inquiry_copy",
        )
        Inquiry.objects.filter(pk=inquiry.pk).update(copied_at=timezone.now())
    return True


@task(queue_name="mail")
def send_inquiry_acknowledgement(inquiry_id: int) -> bool:
    """Tell the guardian the inquiry arrived, with its 受付番号."""
    inquiry = _inquiry(inquiry_id)
    if inquiry is None or inquiry.acknowledged_at is not None:
        return False
    to = inquiry.answer_address()
    if not to:
        return False
    with transaction.atomic():
        _post(
            functools.partial(mails.inquiry_acknowledgement, inquiry, to),
            to,
            inquiry,
            "inquiry_acknowledgement",
        )
        Inquiry.objects.filter(pk=inquiry.pk).update(acknowledged_at=timezone.now())
    return True


@task(queue_name="mail")
def send_inquiry_answer(inquiry_id: int) -> bool:
    """Send the staff's answer to the guardian."""
    inquiry = _inquiry(inquiry_id)
    if inquiry is None or inquiry.status != InquiryStatus.ANSWERED or inquiry.answer_mailed_at is not None:
        return False
    to = inquiry.answer_address()
    if not to:
        log.info("inquiry %s answered but has no address to send to", inquiry.pk)
        return False
    with transaction.atomic():
        _post(functools.partial(mails.inquiry_answer, inquiry, to), to, inquiry, "inquiry_answer")
        Inquiry.objects.filter(pk=inquiry.pk).update(answer_mailed_at=timezone.now())
    return True


def _post(build: Callable[[], EmailMessage], to: str, inquiry: Inquiry, kind: str) -> None:
    """Into the outbox; a mail that cannot be built is recorded failed there, with the reason."""
    municipality = inquiry.municipality
    outbox.post(
        build,
        to=to,
        kind=kind,
        target=f"inquiry {inquiry.pk}",
        municipality=municipality,
        domain=municipality.mail_domain,
    )

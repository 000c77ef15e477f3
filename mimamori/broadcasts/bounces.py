"""Bounces coming back (P5): each is matched to the mail it answers by its envelope sender
(mail/verp.py), and counts against that mail's address (registry/health.py).

Here, because broadcasts are the lowest app that knows both kinds of mail: a broadcast's
deliveries and the outbox's other mail (mail/outbox.py). A bounced mail was accepted by the
relay, so it counted as sent; it now counts as failed, with the bounce's words as its reply,
which staff see beside the synchronous refusals.
"""

from __future__ import annotations

import email
import logging
from email.message import Message

from django.db import transaction

from mimamori.broadcasts.models import Delivery, DeliveryStatus
from mimamori.mail import bounces, verp
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry import health

log = logging.getLogger(__name__)

# Where a relay writes the address a message was delivered to, most exact first.
ENVELOPE_HEADERS = ("X-Original-To", "Delivered-To", "To")


def envelope_recipient(message: Message) -> str:
    for header in ENVELOPE_HEADERS:
        for value in message.get_all(header) or []:
            if verp.read(str(value)) is not None:
                return str(value)
    return ""


def ingest(raw: bytes, recipient: str = "") -> str:
    """Record one bounce; returns what became of it, for the log (never raises for its content)."""
    message = email.message_from_bytes(raw)
    addressed = recipient or envelope_recipient(message)
    mail = verp.read(addressed) if addressed else None
    if mail is None:
        return "ignored: not addressed to one of our envelope senders"
    failure = bounces.from_message(message)
    if failure is None:
        return "ignored: not a bounce (an automatic reply, or a delay notice)"
    kind, number = mail
    if kind == verp.MAIL:
        return _outgoing_bounced(number, failure)
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=number).first()
        if delivery is None:
            return f"ignored: delivery {number} no longer exists"
        if delivery.status == DeliveryStatus.ACCEPTED:
            delivery.status = DeliveryStatus.FAILED
            delivery.reply = f"bounce: {failure.text}"[:500]
            delivery.save(update_fields=["status", "reply"])
        status = health.record_failure(delivery.email, failure, source="bounce")
    return f"recorded: delivery {number}, {failure.status or 'no status'}, address {status}"


def _outgoing_bounced(number: int, failure: bounces.Failure) -> str:
    """A bounce of a mail that is not a broadcast (mail/outbox.py): the same, for its row."""
    with transaction.atomic():
        sent = OutgoingMail.objects.select_for_update().filter(pk=number).first()
        if sent is None:
            return f"ignored: mail {number} no longer exists"
        if sent.status == OutgoingStatus.SENT:
            sent.status = OutgoingStatus.FAILED
            sent.reply = f"bounce: {failure.text}"[:500]
            sent.save(update_fields=["status", "reply"])
        status = health.record_failure(sent.to, failure, source="bounce")
    return f"recorded: mail {number} ({sent.kind}), {failure.status or 'no status'}, address {status}"

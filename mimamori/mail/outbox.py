"""One reliable path for every mail that is not a broadcast: post() in the caller's transaction,
then a task on the mail queue offers it to the relay and records what the relay said.

- 2xx: sent. 4xx or a cut connection: tried again with backoff (smtp.retry_delay) up to
  MIMAMORI_RETRY_MAX_ATTEMPTS; 5xx: failed at once, with the server's words.
- Each mail has its own envelope sender (mail/verp.py), so a later bounce names it.
- Each mail is DKIM-signed as it is offered (mail/signing.py), when its domain has a key.
- A worker that died holding a mail lets it go after a lease; the sweep offers it again, as it
  does a mail whose queue message was lost.
- ``failed`` is sent for each mail that failed for good, so the app that owns the address can
  count it (registry/health.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Model
from django.dispatch import Signal
from django.utils import timezone

from mimamori import tasking
from mimamori.mail import carriers, messages, signing, verp
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.mail.smtp import Outcome, Reply, SmtpSession, retry_delay

log = logging.getLogger(__name__)

# Sent with ``mail`` (an OutgoingMail) and ``reply`` when a mail failed for good.
failed = Signal()


def post(
    message: EmailMessage | Callable[[], EmailMessage],
    *,
    kind: str,
    domain: str,
    target: str = "",
    municipality: Model | int | None = None,
    to: str = "",
    queue: str = tasking.MAIL,
    send: bool = True,
) -> OutgoingMail:
    """Queue ``message`` (one recipient) for sending; call it inside the transaction that decides
    the mail should go, so that it exists exactly when that decision does.

    It is written now, in the character set of its carrier group (mail/charsets.py) as this
    process last read the groups (at most half a minute ago).

    ``message`` may be the function that builds it, with ``to`` its recipient: a mail that
    cannot be built (messages.BUILD_ERRORS: a line break in a school's name stored before the
    input rule) is then written failed at once, with the reason, instead of raising in the
    caller, whose task would be retried as if the trouble were temporary.
    """
    municipality_id = municipality.pk if isinstance(municipality, Model) else municipality
    try:
        built = message if isinstance(message, EmailMessage) else message()
        (to,) = built.to
        content = messages.as_bytes(built, carriers.cached().of(to).charset)
    except messages.BUILD_ERRORS as error:
        if isinstance(message, EmailMessage):
            to = message.to[0] if message.to else ""
        log.warning("%s mail for %s cannot be built: %s", kind, target, error)
        reply = Reply(Outcome.PERMANENT, messages.unbuildable(error))
        mail = OutgoingMail.objects.create(
            kind=kind,
            target=target[:200],
            municipality_id=municipality_id,
            to=to[:254],
            envelope_domain=domain,
            status=OutgoingStatus.FAILED,
            reply=reply.text,
        )
        failed.send(sender=OutgoingMail, mail=mail, reply=reply)
        return mail
    with transaction.atomic():
        mail = OutgoingMail.objects.create(
            kind=kind,
            target=target[:200],
            municipality_id=municipality_id,
            to=to,
            envelope_domain=domain,
            message=content,
        )
        if send:
            _queue(mail.pk, queue=queue)
    return mail


# Mails sent by one task over one relay connection (send_together): a reader's batch of gate
# mails. Few enough that the first worker free takes the next group meanwhile, and that a mail
# late in a group waits for no more than a few dozen others (milliseconds each on an open
# connection, against a new connection, a task row and a worker's round of its own per mail).
TOGETHER = 20


def send_together(mails: Sequence[OutgoingMail], queue: str) -> None:
    """Queue mails posted with ``send=False``: one task per TOGETHER of them (send_many)."""
    from mimamori.mail.tasks import send_mails

    ids = [mail.pk for mail in mails if mail.status == OutgoingStatus.PENDING]
    for start in range(0, len(ids), TOGETHER):
        tasking.enqueue(send_mails, *ids[start : start + TOGETHER], queue=queue)


def send_many(mail_ids: Sequence[int]) -> list[str]:
    """send() each mail in turn over one relay connection; their statuses afterwards. These are
    the mails of the time-critical lane (a reader's gate mails): they take their carrier groups'
    sessions as urgent broadcasts do, so a large broadcast holding the others does not stop them."""
    with SmtpSession() as session:
        return [send(mail_id, session, urgent=True) for mail_id in mail_ids]


def _queue(mail_id: int, run_after: datetime | None = None, queue: str = tasking.MAIL) -> None:
    from mimamori.mail.tasks import send_mail

    tasking.enqueue(send_mail, mail_id, queue=queue, run_after=run_after)


def send(mail_id: int, session: SmtpSession | None = None, urgent: bool = False) -> str:
    """Offer one queued mail to the relay (over ``session`` if given, else a connection of its
    own); returns its status afterwards."""
    now = timezone.now()
    taken = OutgoingMail.objects.filter(
        pk=mail_id, status__in=[OutgoingStatus.PENDING, OutgoingStatus.DEFERRED], next_attempt_at__lte=now
    ).update(status=OutgoingStatus.SENDING, claimed_at=now)
    mail = OutgoingMail.objects.get(pk=mail_id)
    if not taken:
        return str(mail.status)  # done already, or not due: a twin task or the sweep's
    try:
        # Signed now rather than when posted: with the key of this moment (a key made or
        # replaced since counts) and a fresh t=, also on a retry.
        content = signing.sign(bytes(mail.message))
    except Exception as error:
        # As a broadcast mail that cannot be built: tried again, then failed with the reason.
        log.exception("could not sign outgoing mail %s", mail.pk)
        return _record(mail, Reply(Outcome.TEMPORARY, f"internal error: {error}"[:500]))
    # Its carrier group's limits hold for these mails too (mail/carriers.py).
    profile = carriers.current().of(mail.to)
    if profile.paused(now):
        return _wait(mail, profile.paused_until or now)
    leases = carriers.acquire({profile.id: 1}, uuid.uuid4(), urgent=urgent).get(profile.id)
    if not leases:
        return _wait(mail, now + timedelta(seconds=settings.MIMAMORI_CARRIER_BUSY_SECONDS))
    try:
        with SmtpSession() if session is None else contextlib.nullcontext(session) as relay:
            sender = verp.envelope_sender(verp.MAIL, mail.pk, mail.envelope_domain)
            began = time.monotonic()
            reply = relay.send(sender, mail.to, content)
            seconds = time.monotonic() - began
    finally:
        carriers.release(leases)
    reason = carriers.trouble_in(reply, seconds)
    if reason is not None:
        carriers.troubled(profile, reason)
    elif reply.outcome is Outcome.ACCEPTED and profile.troubled:
        carriers.recovered(profile)
    return _record(mail, reply)


def _wait(mail: OutgoingMail, until: datetime) -> str:
    """Not offered: its carrier group is paused or busy. It waits, its attempts untouched."""
    with transaction.atomic():
        OutgoingMail.objects.filter(pk=mail.pk).update(
            status=OutgoingStatus.DEFERRED, claimed_at=None, next_attempt_at=until
        )
        _queue(mail.pk, run_after=until)
    return str(OutgoingStatus.DEFERRED)


def _record(mail: OutgoingMail, reply: Reply) -> str:
    mail.attempts += 1
    mail.reply = reply.text if reply.outcome is not Outcome.ACCEPTED else ""
    mail.claimed_at = None
    if reply.outcome is Outcome.ACCEPTED:
        mail.status, mail.sent_at, mail.message = OutgoingStatus.SENT, timezone.now(), b""
    elif reply.outcome is Outcome.TEMPORARY and mail.attempts < settings.MIMAMORI_RETRY_MAX_ATTEMPTS:
        mail.status, mail.next_attempt_at = (
            OutgoingStatus.DEFERRED,
            timezone.now() + retry_delay(mail.attempts),
        )
    else:
        mail.status, mail.message = OutgoingStatus.FAILED, b""
    with transaction.atomic():
        mail.save(
            update_fields=[
                "attempts",
                "reply",
                "claimed_at",
                "status",
                "sent_at",
                "message",
                "next_attempt_at",
            ]
        )
        if mail.status == OutgoingStatus.DEFERRED:
            _queue(mail.pk, run_after=mail.next_attempt_at)
    if mail.status == OutgoingStatus.FAILED:
        failed.send(sender=OutgoingMail, mail=mail, reply=reply)
    return str(mail.status)


def recover(now: datetime) -> dict[str, int]:
    """The mail step of the periodic sweep: mails a dead worker held, or whose task was lost."""
    lease_ended = now - timedelta(seconds=settings.MIMAMORI_DELIVERY_LEASE_SECONDS)
    long_overdue = now - timedelta(seconds=settings.MIMAMORI_REQUEUE_AFTER_SECONDS)
    with transaction.atomic():
        held = OutgoingMail.objects.select_for_update(skip_locked=True).filter(
            status=OutgoingStatus.SENDING, claimed_at__lt=lease_ended
        )
        reclaimed = list(held.values_list("pk", flat=True))
        OutgoingMail.objects.filter(pk__in=reclaimed).update(
            status=OutgoingStatus.PENDING, claimed_at=None, next_attempt_at=now
        )
        overdue = list(
            OutgoingMail.objects.filter(
                status__in=[OutgoingStatus.PENDING, OutgoingStatus.DEFERRED], next_attempt_at__lt=long_overdue
            ).values_list("pk", flat=True)
        )
        for mail_id in reclaimed + overdue:
            _queue(mail_id)
    return {"mail_reclaimed": len(reclaimed), "mail_requeued": len(overdue)}

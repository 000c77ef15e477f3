"""Background tasks of the mail app: offering queued mails to the relay (mail/outbox.py)."""

from __future__ import annotations

from mimamori.mail import outbox
from mimamori.tasking import task


@task(queue_name="mail")
def send_mail(mail_id: int) -> str:
    return outbox.send(mail_id)


@task(queue_name="gates")
def send_mails(*mail_ids: int) -> list[str]:
    """Several queued mails over one relay connection (outbox.send_together)."""
    return outbox.send_many(mail_ids)

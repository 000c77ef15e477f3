"""Background task of the mail app: offering one queued mail to the relay (mail/outbox.py)."""

from __future__ import annotations

from mimamori.mail import outbox
from mimamori.tasking import task


@task(queue_name="mail")
def send_mail(mail_id: int) -> str:
    return outbox.send(mail_id)

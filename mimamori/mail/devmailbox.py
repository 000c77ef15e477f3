"""The built-in development mailbox of embedded mode.

`mimamori run` without EMAIL_URL starts this SMTP server on loopback; the application
sends to it over real SMTP exactly as it would to a production relay, and every accepted
message is stored in a Maildir under the data directory, where the console's mailbox page
reads it. Nothing here is used when EMAIL_URL names a real relay.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class Pipelining:
    """aiosmtpd handler mixin: offer PIPELINING (RFC 2920), as the relays mimamori talks to do.

    aiosmtpd reads commands one at a time from a buffered stream, so commands that arrive
    together are answered in order; it just does not say so in its EHLO reply.
    """

    pipelining = True

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when no hook is installed
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses


class MaildirHandler(Pipelining):
    """aiosmtpd handler: one Maildir message per recipient, so each guardian's copy is visible."""

    def __init__(self, directory: Path) -> None:
        # mailbox.Maildir creates tmp/new/cur only when the folder itself is missing, so a
        # folder made by hand (or an earlier run) would leave delivery failing.
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(directory, create=False)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            message = mailbox.MaildirMessage(b"X-Mimamori-Rcpt-To: " + recipient.encode() + b"\r\n" + content)
            self.maildir.add(message)
        return "250 OK"


def start_server(directory: Path, host: str = "127.0.0.1", port: int = 8025) -> Controller:
    controller = Controller(MaildirHandler(directory), hostname=host, port=port)
    controller.start()
    return controller


@dataclass(frozen=True)
class StoredMail:
    key: str
    recipient: str
    sender: str
    subject: str
    date: datetime | None
    body: str


def _aware(moment: datetime) -> datetime:
    # Django writes Date headers in UTC as "-0000" (RFC 5322: zone unknown), which parses naive.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse(key: str, raw: bytes) -> StoredMail:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    part = message.get_body(preferencelist=("plain", "html"))
    body = part.get_content() if part is not None else ""
    date = message.get("Date")
    return StoredMail(
        key=key,
        recipient=str(message.get("X-Mimamori-Rcpt-To", "")),
        sender=_sender(raw),
        subject=str(message.get("Subject", "")),
        date=_aware(parsedate_to_datetime(str(date))) if date else None,
        body=body,
    )


def _sender(raw: bytes) -> str:
    """The From header decoded as mail clients show it. The modern parser keeps a space between
    two encoded words of a display name split over lines (「（自動 ）」), which RFC 2047 drops."""
    written = BytesHeaderParser().parsebytes(raw).get("From", "")
    return str(make_header(decode_header(str(written))))


def list_mail(directory: Path, limit: int = 200) -> list[StoredMail]:
    """The newest messages first."""
    if not directory.exists():
        return []
    box = mailbox.Maildir(directory, create=False)
    mails = [_parse(key, box.get_bytes(key)) for key in box.iterkeys()]
    mails.sort(key=lambda m: (m.date is not None, m.date or datetime.min.replace(tzinfo=UTC)), reverse=True)
    return mails[:limit]


def find_mail(directory: Path, key: str) -> StoredMail | None:
    if not directory.exists():
        return None
    box = mailbox.Maildir(directory, create=False)
    try:
        return _parse(key, box.get_bytes(key))
    except KeyError:
        return None

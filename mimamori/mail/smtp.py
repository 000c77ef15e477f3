"""Talking to the SMTP relay: one reusable session per connection, and what each reply means.

The reply decides the delivery's fate: 2xx accepted, 4xx and broken connections are worth
another try later, 5xx is a permanent failure recorded with the server's own words.

When the relay offers PIPELINING (RFC 2920; Postfix and the relays we target do), MAIL, RCPT
and DATA go out in one write and their three replies are read after it: two round trips per
mail instead of four. Relays that do not offer it get the ordinary lock-step dialogue.
"""

from __future__ import annotations

import enum
import re
import smtplib
import ssl
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType

from django.conf import settings

LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


# Where in the dialogue a reply came: only RCPT's and DATA's speak of the recipient's address;
# MAIL's speak of the sender, and a cut connection or a mail that could not be built ("") of
# neither.
MAIL, RCPT, DATA = "mail", "rcpt", "data"


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    text: str
    stage: str = ""

    @property
    def about_recipient(self) -> bool:
        """The server refused this recipient or this mail for it (not itself: 421)."""
        return self.stage in (RCPT, DATA) and not self.text.startswith("421")


def _reply(code: int, message: bytes | str, stage: str = "") -> Reply:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    text = f"{code} {text}".strip()[:500]
    if 200 <= code < 300:
        return Reply(Outcome.ACCEPTED, text, stage)
    if 400 <= code < 500 or code < 200:
        return Reply(Outcome.TEMPORARY, text, stage)
    return Reply(Outcome.PERMANENT, text, stage)


def retry_delay(attempts: int) -> timedelta:
    """When to try a temporarily refused mail again: base, 2×base, 4×base … capped."""
    base = settings.MIMAMORI_RETRY_BASE_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), settings.MIMAMORI_RETRY_MAX_SECONDS))


class UnsendableAddress(ValueError):
    pass


def _path(address: str) -> str:
    """An address as an SMTP path (RFC 5321 §4.1.2).

    Addresses are checked when they are registered (S8) and senders are built from checked
    parts, so they go in as they are: smtplib.quoteaddr parses each one again, a tenth of a
    worker's CPU per mail.
    """
    if "\r" in address or "\n" in address:
        raise UnsendableAddress(address)  # a line break would end the command and start another
    return f"<{address}>"


def _dot_terminated(message: bytes) -> bytes:
    """The message as the DATA phase carries it: leading dots doubled, ended by CRLF . CRLF."""
    content = LEADING_DOT.sub(b"..", message)  # RFC 5321 §4.5.2, as smtplib.SMTP.data() does
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content + b".\r\n"


class SmtpSession:
    """One connection to the relay, opened lazily and reopened after it breaks, or after
    ``mails_per_connection`` mails (0: no limit) when a carrier profile asks for it."""

    def __init__(self, timeout: float | None = None, mails_per_connection: int = 0) -> None:
        self.timeout = timeout or settings.EMAIL_TIMEOUT
        self.connection: smtplib.SMTP | None = None
        self.mails_per_connection = mails_per_connection
        self.mails = 0  # offered on this connection

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _open(self) -> smtplib.SMTP:
        if settings.EMAIL_USE_SSL:
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.EMAIL_HOST,
                settings.EMAIL_PORT,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = smtplib.SMTP(settings.EMAIL_HOST, settings.EMAIL_PORT, timeout=self.timeout)
        try:
            connection.ehlo()
            if settings.EMAIL_USE_TLS:
                connection.starttls(context=ssl.create_default_context())
                connection.ehlo()
            if settings.EMAIL_HOST_USER:
                connection.login(settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD)
        except BaseException:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                self.connection.close()
            self.connection = None

    def send(self, sender: str, recipient: str, message: bytes) -> Reply:
        """Offer one message for one recipient; never raises for what the server or network does."""
        try:
            paths = _path(sender), _path(recipient)  # an unsendable one is refused before anything goes out
            if self.connection is not None and 0 < self.mails_per_connection <= self.mails:
                self.close()
            if self.connection is None:
                self.connection = self._open()
                self.mails = 0
            self.mails += 1
            connection = self.connection
            if connection.has_extn("pipelining"):
                return self._send_pipelined(connection, *paths, message)
            code, text = connection.mail(sender)
            if code != 250:
                return self._refused(code, text, MAIL)
            code, text = connection.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(code, text, RCPT)
            code, text = connection.data(message)
            return _reply(code, text, DATA)
        except smtplib.SMTPResponseException as error:
            # smtplib closes the socket for some of these (421 among them); start afresh.
            self._drop()
            return _reply(error.smtp_code, error.smtp_error)
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            self._drop()
            return Reply(Outcome.TEMPORARY, f"connection: {error or type(error).__name__}"[:500])
        except (UnicodeEncodeError, UnsendableAddress) as error:
            # Addresses are checked when they are registered (S8); one that is not ASCII, or
            # holds a line break, cannot be written in an SMTP envelope, now or later.
            self.close()
            unicode = isinstance(error, UnicodeEncodeError)
            return Reply(Outcome.PERMANENT, "address is not ASCII" if unicode else "line break in address")

    def _send_pipelined(self, connection: smtplib.SMTP, sender: str, recipient: str, message: bytes) -> Reply:
        """MAIL, RCPT and DATA in one write; ``sender`` and ``recipient`` as SMTP paths."""
        envelope = f"MAIL FROM:{sender}\r\nRCPT TO:{recipient}\r\nDATA\r\n"
        connection.send(envelope.encode("ascii"))
        replies: list[tuple[int, bytes]] = []
        for _ in range(3):
            code, text = connection.getreply()
            if code == 421:  # the server is closing the connection: no more replies will come
                return self._refused(code, text)
            replies.append((code, text))
        mail, rcpt, (data_code, _) = replies
        refused = (*mail, MAIL) if mail[0] != 250 else (*rcpt, RCPT) if rcpt[0] not in (250, 251) else None
        if refused:
            if data_code == 354:
                # A relay that opens DATA after refusing the envelope gets an empty message,
                # which it cannot deliver to anyone, to end the transaction.
                connection.send(b".\r\n")
                connection.getreply()
            return self._refused(*refused)
        if data_code != 354:
            return self._refused(*replies[2], DATA)  # e.g. 554 no valid recipients, 451 try later
        connection.send(_dot_terminated(message))
        return _reply(*connection.getreply(), DATA)

    def _refused(self, code: int, text: bytes, stage: str = "") -> Reply:
        if code == 421:
            self._drop()  # the server is closing the connection (RFC 5321 §3.8)
        else:
            self.connection.rset()  # type: ignore[union-attr]
        return _reply(code, text, stage)

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

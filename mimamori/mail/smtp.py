"""Talking to the SMTP relay: one reusable session per connection, and what each reply means.

The reply decides the delivery's fate: 2xx accepted, 4xx and broken connections are worth
another try later, 5xx is a permanent failure recorded with the server's own words.
"""

from __future__ import annotations

import enum
import smtplib
import ssl
from dataclasses import dataclass
from types import TracebackType

from django.conf import settings


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    text: str


def _reply(code: int, message: bytes | str) -> Reply:
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    text = f"{code} {text}".strip()[:500]
    if 200 <= code < 300:
        return Reply(Outcome.ACCEPTED, text)
    if 400 <= code < 500 or code < 200:
        return Reply(Outcome.TEMPORARY, text)
    return Reply(Outcome.PERMANENT, text)


class SmtpSession:
    """One connection to the relay, opened lazily and reopened after it breaks."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout or settings.EMAIL_TIMEOUT
        self.connection: smtplib.SMTP | None = None

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
            if self.connection is None:
                self.connection = self._open()
            connection = self.connection
            code, text = connection.mail(sender)
            if code != 250:
                return self._refused(code, text)
            code, text = connection.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(code, text)
            code, text = connection.data(message)
            return _reply(code, text)
        except smtplib.SMTPResponseException as error:
            # smtplib closes the socket for some of these (421 among them); start afresh.
            self._drop()
            return _reply(error.smtp_code, error.smtp_error)
        except (TimeoutError, smtplib.SMTPException, OSError) as error:
            self._drop()
            return Reply(Outcome.TEMPORARY, f"connection: {error or type(error).__name__}"[:500])

    def _refused(self, code: int, text: bytes) -> Reply:
        if code == 421:
            self._drop()  # the server is closing the connection (RFC 5321 §3.8)
        else:
            self.connection.rset()  # type: ignore[union-attr]
        return _reply(code, text)

    def _drop(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

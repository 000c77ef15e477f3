"""What every mail shares: how it is rendered, encoded and addressed.

Each app owns the mails it sends (their templates under ``<app>/mail/`` and one small function
that builds each); they all come through build() here, and are written as bytes by as_bytes(),
in the character set their destination reads (mail/charsets.py; the carrier profile says which).
Mail is UTF-8 with a 7-bit clean transfer encoding (base64 for Japanese text), or ISO-2022-JP
(7bit) where a carrier profile asks for it, and is written in Japanese, the language of the
guardian's phone rather than of the staff member's browser.

Headers are written here rather than by Django and Python's email package: they put a long
Japanese Subject's first encoded word on a line of its own (``Subject:`` and then a fold), which
some phones show as an empty subject. Here Subject and a display name start their RFC 2047
encoded words on the first line, each line at most 76 characters (RFC 2047 section 2), folded
between whole words, a word never splitting a character.
"""

from __future__ import annotations

import base64
import copy
from email.charset import BASE64, Charset
from email.header import Header
from email.headerregistry import Address as HeaderAddress
from email.message import Message
from email.utils import make_msgid, parseaddr

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import SafeMIMEText
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext

from mimamori.mail import charsets

# UTF-8 in base64: 7-bit clean, so no relay or old carrier gateway can mangle Japanese text.
# (Django would pick 8bit for short lines.)
SEVEN_BIT_UTF8 = Charset("utf-8")
SEVEN_BIT_UTF8.body_encoding = BASE64
# ISO-2022-JP is 7-bit itself (RFC 1468): no transfer encoding; named in capitals, as Japanese
# mail software writes it.
ISO_2022_JP = Charset("iso-2022-jp")
ISO_2022_JP.input_charset = ISO_2022_JP.output_charset = charsets.NAMES[charsets.ISO2022JP]
BODY_CHARSETS = {charsets.UTF8: SEVEN_BIT_UTF8, charsets.ISO2022JP: ISO_2022_JP}

# RFC 2047: a line holding encoded words is at most 76 characters, a word at most 75.
LINE_LIMIT = 76
WORD_LIMIT = 75
_WORD_START = {charsets.UTF8: "=?utf-8?b?", charsets.ISO2022JP: "=?ISO-2022-JP?B?"}
_CODECS = {charsets.UTF8: "utf-8", charsets.ISO2022JP: "iso2022_jp"}


# What building a mail raises for data a mail cannot carry: a line break in a header value
# (Django's BadHeaderError, the email package's "address parts cannot contain CR or LF"),
# text a codec cannot write (UnicodeError). All are ValueErrors. Stored before the input rule
# (mimamori/text.py) or written past it, such data builds the same broken mail on every try,
# so the mail fails at once with unbuildable()'s reason instead of being retried for an hour.
BUILD_ERRORS: tuple[type[Exception], ...] = (ValueError,)


def unbuildable(error: Exception) -> str:
    """Why a mail could not be built, for the staff who see its failed row (at most 500
    characters, as a reply is stored)."""
    with translation.override(settings.LANGUAGE_CODE):
        reason = gettext(
            "The mail could not be built: a name, subject or address in it holds a line break "
            "or another character mail cannot carry. Correct it and send again. (%(error)s)"
        ) % {"error": error}
    return reason[:500]


def sender(display_name: str, local_part: str, domain: str) -> str:
    """A From address with its display name, encoded as a header needs it."""
    return str(HeaderAddress(display_name=display_name, username=local_part, domain=domain))


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain)


def render_body(template: str, context: dict[str, object]) -> str:
    """The text of ``<template>_body.txt``, in Japanese."""
    with translation.override("ja"):
        return render_to_string(f"{template}_body.txt", context)


class Mail(EmailMessage):
    """Django's EmailMessage, with headers written as phones read them (see the module), in
    ``charset`` (UTF-8 unless the sender chose another; as_bytes() names it per destination)."""

    charset = charsets.UTF8

    def message(self) -> SafeMIMEText:
        return mime(self, self.charset)


def build(
    template: str,
    context: dict[str, object],
    *,
    sender: str,
    to: str,
    domain: str,
    message_id: str | None = None,
    reply_to: str = "",
    headers: dict[str, str] | None = None,
) -> Mail:
    """One mail from ``<template>_subject.txt`` and ``<template>_body.txt``.

    ``domain`` is the sender's mail domain, which the Message-ID carries.
    """
    with translation.override("ja"):
        subject = render_to_string(f"{template}_subject.txt", context).strip()
    message = Mail(
        subject=subject,
        body=render_body(template, context),
        from_email=sender,
        to=[to],
        reply_to=[reply_to] if reply_to else None,
        headers={
            "Message-ID": message_id or new_message_id(domain),
            "Auto-Submitted": "auto-generated",
            **(headers or {}),
        },
    )
    message.encoding = SEVEN_BIT_UTF8
    return message


def as_bytes(message: EmailMessage, charset: str = charsets.UTF8) -> bytes:
    """The mail as the relay is given it, written in ``charset`` (the destination's)."""
    return mime(message, charset).as_bytes(linesep="\r\n")


def mime(message: EmailMessage, charset: str = charsets.UTF8) -> SafeMIMEText:
    """The MIME message of ``message`` in ``charset``: its text substituted where the charset
    cannot hold it (charsets.written), then Django's message with our Subject and addresses."""
    if charset not in BODY_CHARSETS:
        charset = charsets.UTF8  # a profile's value this code does not know: the default
    message = copy.copy(message)
    if charset != charsets.UTF8:
        message.subject = charsets.written(str(message.subject), charset)
        message.body = charsets.body_text(str(message.body), charset)
        message.from_email = _written_address(message.from_email, charset)
        message.reply_to = [_written_address(address, charset) for address in message.reply_to]
    message.encoding = BODY_CHARSETS[charset]
    written: SafeMIMEText = EmailMessage.message(message)  # Django's checks (no newline in a header) hold
    subject = str(message.subject)
    if not subject.isascii():
        _replace(written, "Subject", _Folded(subject, encoded_words(subject, charset, len("Subject: "))))
    _readdress(written, "From", message.from_email, charset)
    if len(message.reply_to) == 1:
        _readdress(written, "Reply-To", message.reply_to[0], charset)
    return written


def encoded_words(text: str, charset: str, taken: int) -> list[str]:
    """``text`` as RFC 2047 B-encoded words in ``charset``, folded: the first line holds a word
    after ``taken`` characters (the header's name), each later one starts with a space. Each
    word holds whole characters, and each line at most LINE_LIMIT characters."""
    start, codec = _WORD_START[charset], _CODECS[charset]
    lines: list[str] = []
    room = LINE_LIMIT - taken
    chunk = ""
    for character in text:
        if chunk and _word_length(start, chunk + character, codec) > min(room, WORD_LIMIT):
            lines.append(_word(start, chunk, codec))
            chunk, room = "", LINE_LIMIT - 1
        chunk += character
    lines.append(_word(start, chunk, codec))
    return [lines[0], *(" " + line for line in lines[1:])]


def _word(start: str, text: str, codec: str) -> str:
    return start + base64.b64encode(text.encode(codec)).decode("ascii") + "?="


def _word_length(start: str, text: str, codec: str) -> int:
    return len(start) + (len(text.encode(codec)) + 2) // 3 * 4 + 2


class _Folded(Header):
    """A header value encoded and folded already: written as it is."""

    def __init__(self, text: str, lines: list[str]) -> None:
        super().__init__()
        self._text, self._lines = text, lines

    def encode(self, splitchars: str = ";, \t", maxlinelen: int | None = None, linesep: str = "\n") -> str:
        return linesep.join(self._lines)

    def __str__(self) -> str:
        return self._text


def _written_address(address: str, charset: str) -> str:
    name, addr_spec = parseaddr(address)
    if not name or charsets.fits(name, charset):
        return address
    local_part, _, domain = addr_spec.rpartition("@")
    return sender(charsets.written(name, charset), local_part, domain)


def _readdress(written: Message, name: str, value: str, charset: str) -> None:
    """An address header whose display name is not ASCII, written with encoded words from the
    first line on: ``From: =?…?= <a@example.jp>``."""
    display_name = parseaddr(value)[0]
    if display_name.isascii() or name not in written:
        return
    addr_spec = parseaddr(str(written[name]))[1]  # as Django wrote it (an IDN domain in punycode)
    taken = len(name) + 2
    lines = encoded_words(display_name, charset, taken)
    address = f" <{addr_spec}>"
    if (taken if len(lines) == 1 else 0) + len(lines[-1]) + len(address) <= LINE_LIMIT:
        lines[-1] += address
    else:
        lines.append(address)
    _replace(written, name, _Folded(value, lines))


def _replace(written: Message, name: str, value: Header) -> None:
    # The compat32 policy Django's messages use stores a Header as it is and folds it with its
    # encode() (typeshed types only the str values of the newer policies).
    written.replace_header(name, value)  # type: ignore[arg-type]

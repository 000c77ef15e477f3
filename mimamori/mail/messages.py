"""What every mail shares: how it is rendered, encoded and addressed.

Each app owns the mails it sends (their templates under ``<app>/mail/`` and one small function
that builds each); they all come through build() here. Mail is UTF-8 with a 7-bit clean
transfer encoding (base64 for Japanese text) and is written in Japanese, the language of the
guardian's phone rather than of the staff member's browser.
"""

from __future__ import annotations

from email.charset import BASE64, Charset
from email.headerregistry import Address as HeaderAddress
from email.utils import make_msgid

from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

# UTF-8 in base64: 7-bit clean, so no relay or old carrier gateway can mangle Japanese text.
# (Django would pick 8bit for short lines.)
SEVEN_BIT_UTF8 = Charset("utf-8")
SEVEN_BIT_UTF8.body_encoding = BASE64


def sender(display_name: str, local_part: str, domain: str) -> str:
    """A From address with its display name, encoded as a header needs it."""
    return str(HeaderAddress(display_name=display_name, username=local_part, domain=domain))


def new_message_id(domain: str) -> str:
    return make_msgid(domain=domain)


def render_body(template: str, context: dict[str, object]) -> str:
    """The text of ``<template>_body.txt``, in Japanese."""
    with translation.override("ja"):
        return render_to_string(f"{template}_body.txt", context)


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
) -> EmailMessage:
    """One mail from ``<template>_subject.txt`` and ``<template>_body.txt``.

    ``domain`` is the sender's mail domain, which the Message-ID carries.
    """
    with translation.override("ja"):
        subject = render_to_string(f"{template}_subject.txt", context).strip()
    message = EmailMessage(
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

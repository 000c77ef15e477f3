"""Each kind of mail: its subject and text templates and one small function that builds it.

Mail is UTF-8 with a 7-bit clean transfer encoding (base64 for Japanese text), and comes
from the school's own sender address with the school's name as display name (S2), so a
guardian's ドメイン指定受信 setting for the municipality's domain lets it through.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.charset import BASE64, Charset
from email.headerregistry import Address as HeaderAddress
from email.utils import make_msgid

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from mimamori.registry.models import Registrant, School

# UTF-8 in base64: 7-bit clean, so no relay or old carrier gateway can mangle Japanese text.
# (Django would pick 8bit for short lines.)
SEVEN_BIT_UTF8 = Charset("utf-8")
SEVEN_BIT_UTF8.body_encoding = BASE64


def school_sender(school: School) -> str:
    local, domain = school.sender_address.split("@")
    return str(HeaderAddress(display_name=school.name, username=local, domain=domain))


def _message(
    school: School, to: str, template: str, context: dict[str, object], message_id: str | None = None
) -> EmailMessage:
    # Guardian mail is Japanese: the guardian's phone, not the staff member's browser, reads it.
    with translation.override("ja"):
        subject = render_to_string(f"mail/{template}_subject.txt", context).strip()
        body = render_to_string(f"mail/{template}_body.txt", context)
    domain = school.municipality.mail_domain
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=school_sender(school),
        to=[to],
        headers={"Message-ID": message_id or make_msgid(domain=domain), "Auto-Submitted": "auto-generated"},
    )
    message.encoding = SEVEN_BIT_UTF8
    return message


def registration_complete(registrant: Registrant, slot: int, email: str) -> EmailMessage:
    """登録完了メール (S7): receiving it proves the address works."""
    school = registrant.school
    return _message(
        school,
        email,
        "registration_complete",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "slot": slot,
            "receives_broadcasts": slot in school.municipality.broadcast_slots,
            "site_url": settings.BASE_URL + "/portal/",
        },
    )


def new_message_id(school: School) -> str:
    return make_msgid(domain=school.municipality.mail_domain)


def broadcast(
    *,
    school: School,
    to: str,
    subject: str,
    body: str,
    urgent: bool,
    children: Sequence[Registrant],
    message_id: str,
    confirmation_url: str | None = None,
    reminder: bool = False,
) -> EmailMessage:
    """A broadcast mail to one address, naming every child it is sent for (B5).

    ``reminder``: the same mail sent again to a household that has not confirmed yet (P3).
    """
    return _message(
        school,
        to,
        "broadcast",
        {
            "school": school,
            "municipality": school.municipality,
            "subject": subject,
            "body": body,
            "urgent": urgent,
            "children": children,
            "confirmation_url": confirmation_url,
            "reminder": reminder,
            "site_url": settings.BASE_URL + "/portal/",
        },
        message_id=message_id,
    )

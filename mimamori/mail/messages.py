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
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import EmailMessage
from django.template.loader import render_to_string
from django.utils import translation

from mimamori.registry.models import Municipality, Registrant, School

if TYPE_CHECKING:
    from mimamori.support.models import Inquiry

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


# The support desk writes from the municipality's mail domain, so a guardian whose phone
# accepts only that domain (ドメイン指定受信) still receives the answer.
SUPPORT_SENDER_LOCAL_PART = "support"


def support_sender(municipality: Municipality) -> str:
    name = municipality.support_name or municipality.name
    return str(
        HeaderAddress(display_name=name, username=SUPPORT_SENDER_LOCAL_PART, domain=municipality.mail_domain)
    )


def _desk_message(
    municipality: Municipality, sender: str, to: str, reply_to: str, template: str, context: dict[str, object]
) -> EmailMessage:
    with translation.override("ja"):
        subject = render_to_string(f"mail/{template}_subject.txt", context).strip()
        body = render_to_string(f"mail/{template}_body.txt", context)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=sender,
        to=[to],
        reply_to=[reply_to] if reply_to else None,
        headers={
            "Message-ID": make_msgid(domain=municipality.mail_domain),
            "Auto-Submitted": "auto-generated",
        },
    )
    message.encoding = SEVEN_BIT_UTF8
    return message


def inquiry_copy(inquiry: Inquiry) -> EmailMessage:
    """A new inquiry, copied to the municipality's support address (S13)."""
    municipality = inquiry.municipality
    registrant = inquiry.registrant
    return _desk_message(
        municipality,
        support_sender(municipality),
        municipality.support_email,
        inquiry.answer_address(),
        "inquiry_copy",
        {
            "inquiry": inquiry,
            "municipality": municipality,
            "registrant": registrant,
            "school": registrant.school if registrant else None,
            "console_url": f"{settings.BASE_URL}/console/inquiries/{inquiry.pk}/",
        },
    )


def inquiry_answer(inquiry: Inquiry, to: str) -> EmailMessage:
    """The staff's answer to an inquiry, sent to the guardian (S13).

    A logged-in guardian's answer comes from their school's sender, the address they were
    told to allow for broadcasts; an anonymous one from the municipality's support sender.
    """
    municipality = inquiry.municipality
    registrant = inquiry.registrant
    sender = school_sender(registrant.school) if registrant else support_sender(municipality)
    return _desk_message(
        municipality,
        sender,
        to,
        municipality.support_email,
        "inquiry_answer",
        {"inquiry": inquiry, "municipality": municipality, "site_url": settings.BASE_URL + "/portal/"},
    )

"""The support desk's mail: a new inquiry's copy to the desk, the acknowledgement with its
受付番号 and the answer to the guardian (S13).

All three come from the desk: its name (one name, support_name or a default built from the
municipality's) and its address, the municipality's support e-mail when that is on the
municipality's mail domain, else support@<mail domain> with the support e-mail as Reply-To.
The domain never changes, so a guardian whose phone accepts only that domain (ドメイン指定受信)
still receives the answer, and the mail is signed (DKIM) for it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage

from mimamori.mail import messages
from mimamori.registry.models import Municipality
from mimamori.support.models import Inquiry

SUPPORT_SENDER_LOCAL_PART = "support"


def desk_name(municipality: Municipality) -> str:
    """The desk's one name, for the From header and the signature."""
    return municipality.support_name.strip() or f"児童見守りシステム サポート窓口（{municipality.name}）"


def desk_address(municipality: Municipality) -> str:
    """The address the desk writes from: its support e-mail if that is on the mail domain."""
    email = municipality.support_email.strip()
    local, _at, domain = email.rpartition("@")
    if local and domain.lower() == municipality.mail_domain.lower():
        return f"{local}@{municipality.mail_domain}"
    return f"{SUPPORT_SENDER_LOCAL_PART}@{municipality.mail_domain}"


def support_sender(municipality: Municipality) -> str:
    local, _at, domain = desk_address(municipality).rpartition("@")
    return messages.sender(desk_name(municipality), local, domain)


def _context(inquiry: Inquiry) -> dict[str, object]:
    municipality = inquiry.municipality
    return {
        "inquiry": inquiry,
        "municipality": municipality,
        "desk_name": desk_name(municipality),
        "site_url": settings.BASE_URL + "/portal/",
    }


def inquiry_copy(inquiry: Inquiry) -> EmailMessage:
    """A new inquiry, copied to the municipality's support address (S13)."""
    municipality = inquiry.municipality
    registrant = inquiry.registrant
    return messages.build(
        "support/mail/inquiry_copy",
        {
            "inquiry": inquiry,
            "municipality": municipality,
            "registrant": registrant,
            "school": registrant.school if registrant else None,
            "console_url": f"{settings.BASE_URL}/console/inquiries/{inquiry.pk}/",
        },
        sender=support_sender(municipality),
        to=municipality.support_email,
        domain=municipality.mail_domain,
        reply_to=inquiry.answer_address(),
    )


def inquiry_acknowledgement(inquiry: Inquiry, to: str) -> EmailMessage:
    """受付のお知らせ: the inquiry arrived, under this 受付番号 (S13).

    It repeats nothing the sender typed (name, subject, message): anyone can give any address
    on the form, and the mail must not carry their words to someone else's phone.
    """
    municipality = inquiry.municipality
    return messages.build(
        "support/mail/inquiry_acknowledgement",
        _context(inquiry),
        sender=support_sender(municipality),
        to=to,
        domain=municipality.mail_domain,
        reply_to=municipality.support_email,
    )


def inquiry_answer(inquiry: Inquiry, to: str) -> EmailMessage:
    """The staff's answer to an inquiry, sent to the guardian from the desk (S13)."""
    municipality = inquiry.municipality
    return messages.build(
        "support/mail/inquiry_answer",
        _context(inquiry),
        sender=support_sender(municipality),
        to=to,
        domain=municipality.mail_domain,
        reply_to=municipality.support_email,
    )

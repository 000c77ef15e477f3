"""The support desk's mail: a new inquiry's copy to the desk, the answer to the guardian (S13).

The desk writes from the municipality's mail domain, so a guardian whose phone accepts only
that domain (ドメイン指定受信) still receives the answer.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import EmailMessage

from mimamori.mail import messages
from mimamori.registry.mails import school_sender
from mimamori.registry.models import Municipality
from mimamori.support.models import Inquiry

SUPPORT_SENDER_LOCAL_PART = "support"


def support_sender(municipality: Municipality) -> str:
    name = municipality.support_name or municipality.name
    return messages.sender(name, SUPPORT_SENDER_LOCAL_PART, municipality.mail_domain)


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


def inquiry_answer(inquiry: Inquiry, to: str) -> EmailMessage:
    """The staff's answer to an inquiry, sent to the guardian (S13).

    A logged-in guardian's answer comes from their school's sender, the address they were
    told to allow for broadcasts; an anonymous one from the municipality's support sender.
    """
    municipality = inquiry.municipality
    registrant = inquiry.registrant
    return messages.build(
        "support/mail/inquiry_answer",
        {"inquiry": inquiry, "municipality": municipality, "site_url": settings.BASE_URL + "/portal/"},
        sender=school_sender(registrant.school) if registrant else support_sender(municipality),
        to=to,
        domain=municipality.mail_domain,
        reply_to=municipality.support_email,
    )

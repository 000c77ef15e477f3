"""The registry's mail, and the sender every mail of a school comes from.

A school's mail comes from the school's own sender address with the school's name as display
name (S2), so a guardian's ドメイン指定受信 setting for the municipality's domain lets it through.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import translation

from mimamori.mail import messages
from mimamori.registry.models import DeregistrationRequest, DeregistrationStatus, Registrant, School


def school_sender(school: School) -> str:
    local, domain = school.sender_address.split("@")
    return messages.sender(school.name, local, domain)


def registration_complete(registrant: Registrant, slot: int, email: str) -> EmailMessage:
    """登録完了メール (S7): receiving it proves the address works."""
    school = registrant.school
    return messages.build(
        "registry/mail/registration_complete",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "slot": slot,
            "receives_broadcasts": slot in school.municipality.broadcast_slots,
            "site_url": settings.BASE_URL + "/portal/",
        },
        sender=school_sender(school),
        to=email,
        domain=school.municipality.mail_domain,
    )


def address_suppressed(registrant: Registrant, slot: int, email: str, to_slot: int, to: str) -> EmailMessage:
    """Told once, at a slot that still works, that mail to slot ``slot`` stopped (P5)."""
    school = registrant.school
    return messages.build(
        "registry/mail/address_suppressed",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "slot": slot,
            "email": email,
            "notified_slot": to_slot,
            "site_url": settings.BASE_URL + "/portal/",
        },
        sender=school_sender(school),
        to=to,
        domain=school.municipality.mail_domain,
    )


def reach_test(school: School, email: str, slots: Sequence[tuple[Registrant, int]]) -> EmailMessage:
    """到達テスト (B4): one mail to an address, naming every (registrant, slot) that holds it.

    It says it is a test and asks for nothing, names the children and slots the address is
    registered for (a slot 3 or 4, or 連絡メールを受信する off, gets no broadcasts: said per
    line, as the 登録完了メール says it), and where addresses are changed.
    """
    municipality = school.municipality
    return messages.build(
        "registry/mail/reach_test",
        {
            "school": school,
            "municipality": municipality,
            "entries": [
                {
                    "registrant": registrant,
                    "slot": slot,
                    "receives_broadcasts": registrant.receive_broadcasts
                    and slot in municipality.broadcast_slots,
                }
                for registrant, slot in slots
            ],
            "broadcast_slots": "、".join(str(slot) for slot in sorted(municipality.broadcast_slots)),
            "site_url": settings.BASE_URL + "/portal/",
        },
        sender=school_sender(school),
        to=email,
        domain=municipality.mail_domain,
    )


def password_reset(registrant: Registrant, email: str, url: str, minutes: int) -> EmailMessage:
    """パスワード再設定のご案内 (P11): a one-time link, to the one address that asked."""
    school = registrant.school
    return messages.build(
        "registry/mail/password_reset",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "reset_url": url,
            "minutes": minutes,
        },
        sender=school_sender(school),
        to=email,
        domain=school.municipality.mail_domain,
    )


def deregistration_decided(
    registrant: Registrant, decided: DeregistrationRequest, email: str
) -> EmailMessage:
    """登録解除届 approved or not accepted (S10, issue 14): the guardian hears what staff decided."""
    school = registrant.school
    with translation.override("ja"):
        reason = str(decided.get_reason_display())
    return messages.build(
        "registry/mail/deregistration_decided",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": registrant,
            "decided": decided,
            "reason": reason,
            "approved": decided.status == DeregistrationStatus.APPROVED,
            "site_url": settings.BASE_URL + "/portal/",
        },
        sender=school_sender(school),
        to=email,
        domain=school.municipality.mail_domain,
    )

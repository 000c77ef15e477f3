"""Registration letters (P8): the printed page a guardian gets with the login ID and code."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string

from mimamori.registry.models import Registrant, RegistrantStatus
from mimamori.registry.registrants import Enrolment

FIRST_LOGIN_PATH = "/portal/first-login/"


def first_login_url() -> str:
    # Absolute: the letter is paper, read away from any page that could supply a host.
    return f"{settings.BASE_URL}{FIRST_LOGIN_PATH}"


def letters_html(enrolments: Sequence[Enrolment]) -> str:
    """One standalone, printable HTML document with one page per child."""
    return render_to_string(
        "registry/letters.html", {"enrolments": enrolments, "first_login_url": first_login_url()}
    )


def reissue_registration_codes(registrants: Iterable[Registrant]) -> list[Enrolment]:
    """New codes for children whose guardian has not finished the first login (lost letters).

    The old code stops working. Registrants who already logged in, or were deregistered,
    are skipped: their guardian has a password, and a code would be a second way in.
    """
    enrolments = []
    with transaction.atomic():
        for registrant in registrants:
            if registrant.status != RegistrantStatus.ACTIVE or not registrant.has_pending_registration:
                continue
            code = registrant.issue_registration_code()
            registrant.save(
                update_fields=["registration_code_digest", "registration_code_issued_at", "updated_at"]
            )
            enrolments.append(Enrolment(registrant, code))
    return enrolments

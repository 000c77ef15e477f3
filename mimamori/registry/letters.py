"""Registration letters (P8): the printed page a guardian gets with the login ID and code."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from collections.abc import Iterable, Sequence
from typing import TextIO

from django.conf import settings
from django.db import transaction
from django.template.loader import render_to_string
from django.utils.html import escape

from mimamori.accounts.models import User
from mimamori.registry.models import Registrant, RegistrantStatus
from mimamori.registry.registrants import Enrolment

FIRST_LOGIN_PATH = "/portal/first-login/"

# Stand-ins for a letter's own values, rendered into a frame that is filled in per letter.
_MARK = "\0mimamori:{}\0"
_MARKS = re.compile(r"\0mimamori:(\w+)\0")
_LETTERS_MARK = _MARK.format("letters")


def first_login_url() -> str:
    # Absolute: the letter is paper, read away from any page that could supply a host.
    return f"{settings.BASE_URL}{FIRST_LOGIN_PATH}"


def letters_html(enrolments: Sequence[Enrolment]) -> str:
    """One standalone, printable HTML document with one page per child."""
    out = io.StringIO()
    writer = LettersWriter(out, len(enrolments))
    writer.write(enrolments)
    writer.finish()
    return out.getvalue()


def style_sources(document: str) -> list[str]:
    """Content-Security-Policy sources ('sha256-…') that allow the inline <style> of the
    document's head and nothing else. The letters keep their CSS inline because the roster
    import also writes them to a file that is opened without a server."""
    head = document.partition("</head>")[0]
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()}'"
        for css in re.findall(r"<style>(.*?)</style>", head, re.DOTALL)
    ]


class LettersWriter:
    """Writes the letters document to ``out`` a few letters at a time, as a roster import
    creates them, so no import holds all its letters (or its registrants) in memory.

    The document is registry/letters.html with one registry/letter.html per child. A letter
    differs from the next only in the child, the login ID and the code: the template is
    rendered once per school with stand-ins for those, and each letter fills them in (a few
    microseconds instead of 0.2 ms, which was most of a 10,000-child import). The first letter
    of each school also proves the frame: filled in, it must equal the template's own
    rendering byte for byte, or that school's letters are all rendered the ordinary way.
    """

    def __init__(self, out: TextIO, count: int) -> None:
        self.out = out
        context = {"letter_count": count, "letters": _LETTERS_MARK}
        head, mark, self.tail = render_to_string("registry/letters.html", context).partition(_LETTERS_MARK)
        if not mark:
            raise ValueError("registry/letters.html must show {{ letters }}, where the letters go")
        self._frames: dict[tuple[int, bool], list[str] | None] = {}
        out.write(head)

    def write(self, enrolments: Iterable[Enrolment]) -> None:
        self.out.write("".join(self._letter(enrolment) for enrolment in enrolments))

    def finish(self) -> None:
        self.out.write(self.tail)

    def _letter(self, enrolment: Enrolment) -> str:
        registrant = enrolment.registrant
        # The kana appears in brackets only when there is one: a frame for each case.
        key = (registrant.school_id, bool(registrant.child_name_kana))
        if key not in self._frames:
            self._frames[key] = _learn_frame(enrolment)
        frame = self._frames[key]
        return _render_letter(enrolment) if frame is None else _fill(frame, enrolment)


def _render_letter(enrolment: Enrolment) -> str:
    context = {"enrolment": enrolment, "first_login_url": first_login_url()}
    return render_to_string("registry/letter.html", context)


def _values(enrolment: Enrolment) -> dict[str, object]:
    registrant = enrolment.registrant
    return {
        "child_name": registrant.child_name,
        "child_name_kana": registrant.child_name_kana,
        "grade": registrant.grade,
        "class_name": registrant.class_name,
        "login_id": registrant.login_id,
        "code": enrolment.registration_code,
    }


def _learn_frame(enrolment: Enrolment) -> list[str] | None:
    """The letter split at its own values (odd items name them), if filling it in is exact."""
    registrant = enrolment.registrant
    marks = {name: _MARK.format(name) for name in _values(enrolment)}
    if not registrant.child_name_kana:
        marks["child_name_kana"] = ""
    stand_in = Registrant(
        school=registrant.school,
        account=User(username=marks["login_id"]),
        child_name=marks["child_name"],
        child_name_kana=marks["child_name_kana"],
        grade=marks["grade"],
        class_name=marks["class_name"],
    )
    frame = _MARKS.split(_render_letter(Enrolment(stand_in, marks["code"])))
    if not set(frame[1::2]) <= set(marks):
        return None
    return frame if _fill(frame, enrolment) == _render_letter(enrolment) else None


def _fill(frame: list[str], enrolment: Enrolment) -> str:
    # As the template shows a value: str(), then HTML-escaped (escape() is what autoescape uses).
    values = {name: escape(value) for name, value in _values(enrolment).items()}
    parts = frame.copy()
    for index in range(1, len(parts), 2):
        parts[index] = values[parts[index]]
    return "".join(parts)


def reissue_registration_codes(registrants: Iterable[Registrant]) -> list[Enrolment]:
    """New codes for active registrants: a lost letter, or a guardian who forgot the password
    and has no address that mail reaches (P11).

    The old code stops working now. A guardian who has a password keeps it until the new code
    is used at 初回ログイン, which sets a new one (registrants.complete_first_login): handing
    out a letter ends nobody's access. Deregistered registrants are skipped.
    """
    enrolments = []
    with transaction.atomic():
        for registrant in registrants:
            if registrant.status != RegistrantStatus.ACTIVE:
                continue
            code = registrant.issue_registration_code()
            registrant.save(
                update_fields=["registration_code_digest", "registration_code_issued_at", "updated_at"]
            )
            enrolments.append(Enrolment(registrant, code))
    return enrolments

"""Each kind of mail: its subject and text templates and one small function that builds it.

Mail is UTF-8 with a 7-bit clean transfer encoding (base64 for Japanese text), and comes
from the school's own sender address with the school's name as display name (S2), so a
guardian's ドメイン指定受信 setting for the municipality's domain lets it through.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import base64mime
from email.charset import BASE64, Charset
from email.headerregistry import Address as HeaderAddress
from email.utils import formatdate, make_msgid
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


@dataclass(frozen=True)
class Child:
    """A child a broadcast names, as a chunk reads it (a Registrant has the same attributes)."""

    school: School
    grade: int
    class_name: str
    child_name: str


Children = Sequence[Registrant | Child]


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
    children: Children,
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
        _broadcast_context(
            school, subject, body, urgent, [child_line(c) for c in children], confirmation_url, reminder
        ),
        message_id=message_id,
    )


def child_line(child: Registrant | Child) -> str:
    """How a broadcast names a child it is sent for: 北小学校 3年1組 見守 太郎 さん."""
    return f"{child.school.name} {child.grade}年{child.class_name}組 {child.child_name} さん"


def _broadcast_context(
    school: School,
    subject: str,
    body: str,
    urgent: bool,
    children_lines: list[str],
    confirmation_url: str | None,
    reminder: bool,
) -> dict[str, object]:
    return {
        "school": school,
        "municipality": school.municipality,
        "subject": subject,
        "body": body,
        "urgent": urgent,
        "children_lines": children_lines,
        "confirmation_url": confirmation_url,
        "reminder": reminder,
        "site_url": settings.BASE_URL + "/portal/",
    }


# Header values the fast path writes as they are: a plain dot-atom address or Message-ID that
# needs no quoting, encoding or folding (RFC 5322 line limit 78). Anything else is built slowly.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)
_PLAIN_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>")  # printable ASCII but no < > inside
_LINE_LIMIT = 78
# Where a body frame leaves room for the children's lines and the confirmation link.
_CHILDREN_MARK = "\0mimamori:children\0"
_URL_MARK = "\0mimamori:link\0"


class BroadcastMail:
    """The bytes of one broadcast's mails, built without an EmailMessage per recipient.

    A broadcast's mails differ only in To, Date, Message-ID and the body (the children named,
    the confirmation link). Building the first mail of each school (and round) the ordinary way
    gives a header block; later mails reuse it and only base64 their own body, which is several
    times cheaper than Django's per-message MIME and header encoding. The first mail also
    proves the shortcut: rebuilt the fast way with the same values, it must come out byte for
    byte the same, or that school's mails are all built the ordinary way.
    """

    def __init__(self, *, subject: str, body: str, urgent: bool) -> None:
        self.subject, self.body, self.urgent = subject, body, urgent
        self._heads: dict[tuple[int, bool], list[bytes] | None] = {}
        self._frames: dict[tuple[int, bool, bool], tuple[str, str, str] | None] = {}

    def as_bytes(
        self,
        *,
        school: School,
        to: str,
        children: Children,
        message_id: str,
        confirmation_url: str | None = None,
        reminder: bool = False,
    ) -> bytes:
        key = (school.pk, reminder)
        plain = (
            _PLAIN_ADDRESS.fullmatch(to) is not None
            and len(to) + len("To: ") <= _LINE_LIMIT
            and _PLAIN_MESSAGE_ID.fullmatch(message_id) is not None
            and len(message_id) + len("Message-ID: ") <= _LINE_LIMIT
        )
        if plain and self._heads.get(key):
            text = self._body(school, children, confirmation_url, reminder)
            date = formatdate(localtime=settings.EMAIL_USE_LOCALTIME)
            return self._fast(self._heads[key] or [], to, date, message_id, text)
        mail = broadcast(
            school=school,
            to=to,
            subject=self.subject,
            body=self.body,
            urgent=self.urgent,
            children=children,
            message_id=message_id,
            confirmation_url=confirmation_url,
            reminder=reminder,
        )
        content = mail.message().as_bytes(linesep="\r\n")
        if plain and key not in self._heads:
            self._heads[key] = self._learn(content, to, message_id, str(mail.body))
        return content

    def _body(self, school: School, children: Children, confirmation_url: str | None, reminder: bool) -> str:
        """The text, from a frame rendered once per school and kind with the children's lines
        and the link left open, when the frame proved to give exactly what the template does."""
        key = (school.pk, reminder, confirmation_url is not None)
        if key not in self._frames:
            self._frames[key] = self._learn_frame(school, children, confirmation_url, reminder)
        frame = self._frames[key]
        if frame is None:
            return self._render(school, [child_line(c) for c in children], confirmation_url, reminder)
        return self._fill(frame, children, confirmation_url)

    def _render(self, school: School, lines: list[str], confirmation_url: str | None, reminder: bool) -> str:
        context = _broadcast_context(
            school, self.subject, self.body, self.urgent, lines, confirmation_url, reminder
        )
        with translation.override("ja"):
            return render_to_string("mail/broadcast_body.txt", context)

    def _learn_frame(
        self, school: School, children: Children, confirmation_url: str | None, reminder: bool
    ) -> tuple[str, str, str] | None:
        url = _URL_MARK if confirmation_url is not None else None
        text = self._render(school, [_CHILDREN_MARK], url, reminder)
        before, children_mark, rest = text.partition(_CHILDREN_MARK + "\n")
        middle, url_mark, after = rest.partition(_URL_MARK) if url else (rest, "", "")
        if not children_mark or (url and not url_mark):
            return None
        frame = (before, middle, after)  # proved below, whatever the text around the marks holds
        expected = self._render(school, [child_line(c) for c in children], confirmation_url, reminder)
        return frame if self._fill(frame, children, confirmation_url) == expected else None

    @staticmethod
    def _fill(frame: tuple[str, str, str], children: Children, confirmation_url: str | None) -> str:
        before, middle, after = frame
        lines = "".join(child_line(child) + "\n" for child in children)
        return before + lines + middle + (confirmation_url or "") + after

    @staticmethod
    def _fast(head: list[bytes], to: str, date: str, message_id: str, text: str) -> bytes:
        values = {
            b"\0TO": b"To: " + to.encode(),
            b"\0DATE": b"Date: " + date.encode(),
            b"\0MID": b"Message-ID: " + message_id.encode(),
        }
        lines = [values.get(line, line) for line in head]
        encoded = base64mime.body_encode(text.encode("utf-8")).replace("\n", "\r\n").encode("ascii")
        return b"\r\n".join(lines) + b"\r\n\r\n" + encoded

    def _learn(self, content: bytes, to: str, message_id: str, text: str) -> list[bytes] | None:
        """The header block with To, Date and Message-ID left open, if the shortcut is exact."""
        header, _, _ = content.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        if any(line[:1] in (b" ", b"\t") for line in lines):
            return None  # a folded header: keep to the ordinary way
        if sum(line.startswith((b"To: ", b"Date: ", b"Message-ID: ")) for line in lines) != 3:
            return None
        date = next(line for line in lines if line.startswith(b"Date: "))[len(b"Date: ") :].decode()
        head = list(lines)
        for index, line in enumerate(lines):
            if line == b"To: " + to.encode():
                head[index] = b"\0TO"
            elif line.startswith(b"Date: "):
                head[index] = b"\0DATE"
            elif line == b"Message-ID: " + message_id.encode():
                head[index] = b"\0MID"
        if not {b"\0TO", b"\0DATE", b"\0MID"} <= set(head):
            return None
        return head if self._fast(head, to, date, message_id, text) == content else None


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

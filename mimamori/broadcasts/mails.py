"""Broadcast mail: one mail per address, naming every child it is sent for (B5), and the fast
way a chunk builds its mails' bytes.

A broadcast comes from the school's sender (registry/mails.py); its text is the
``broadcasts/mail/broadcast`` templates, built through mail/messages.py like every mail.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email import base64mime
from email.utils import formatdate

from django.conf import settings

from mimamori.mail import carriers, charsets, messages, verp
from mimamori.registry.mails import school_sender
from mimamori.registry.models import Registrant, School

TEMPLATE = "broadcasts/mail/broadcast"


@dataclass(frozen=True)
class Child:
    """A child a broadcast names, as a chunk reads it (a Registrant has the same attributes)."""

    school: School
    grade: int
    class_name: str
    child_name: str


Children = Sequence[Registrant | Child]


def confirmation_url(token: str) -> str:
    """The link a mail asks its reader to confirm with (S5), carrying the delivery's token.

    Short, so that it survives carriers' line wrapping; the guardian page lives under /c/
    (portal/confirm.py), and receipts/confirming.py records what is pressed there.
    """
    return f"{settings.BASE_URL}/c/{token}/"


def unsubscribe_url(delivery_id: int) -> str:
    """The mail's one-click unsubscribe link: opaque (mail/verp.py's seal, its own key)."""
    return f"{settings.BASE_URL}/u/{verp.seal(verp.DELIVERY, delivery_id, purpose='unsubscribe')}/"


def new_message_id(school: School) -> str:
    return messages.new_message_id(school.municipality.mail_domain)


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
    unsubscribe_url: str | None = None,
    answers: Sequence[str] = (),
) -> messages.Mail:
    """A broadcast mail to one address, naming every child it is sent for (B5).

    ``reminder``: the same mail sent again to a household that has not confirmed yet (P3).
    ``answers``: a 安否確認's choices (B1): the mail lists them and asks for an answer at the
    link instead of a bare confirmation.
    ``unsubscribe_url``: the mail's one-click unsubscribe link (RFC 8058), which turns
    連絡メールを受信する off for the children it names (broadcasts/unsubscribe.py).
    """
    # One list per school, so mail clients can tell a school's broadcasts from another's.
    headers = {"List-Id": f"<school-{school.pk}.{school.municipality.mail_domain}>"}
    if unsubscribe_url is not None:
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return messages.build(
        TEMPLATE,
        _broadcast_context(
            school,
            subject,
            body,
            urgent,
            [child_line(c) for c in children],
            confirmation_url,
            reminder,
            answers,
        ),
        sender=school_sender(school),
        to=to,
        domain=school.municipality.mail_domain,
        message_id=message_id,
        headers=headers,
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
    answers: Sequence[str] = (),
) -> dict[str, object]:
    return {
        "answers": list(answers),
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


@dataclass(frozen=True)
class Rewriting:
    """What writing a broadcast in the character set of some carrier groups changes in its text
    (mail/charsets.py): each (typed, sent) pair once, e.g. ("①", "(1)")."""

    groups: list[str]  # the groups' labels: ドコモ
    charset: str  # as mail names it: ISO-2022-JP
    changes: list[tuple[str, str]]


def rewritings(subject: str, body: str) -> list[Rewriting]:
    """What the carrier groups whose mail is not UTF-8 would change in this subject and body,
    for staff to see before they send (nothing when no group uses another character set)."""
    found = []
    for charset, groups in carriers.by_charset().items():
        changes = charsets.changes(f"{subject}\n{body}", charset)
        if changes:
            found.append(Rewriting(groups, charsets.NAMES.get(charset, charset), changes))
    return found


# Header values the fast path writes as they are: a plain dot-atom address or Message-ID that
# needs no quoting, encoding or folding (RFC 5322 line limit 78). Anything else is built slowly.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+"
)
_PLAIN_VALUE = re.compile(r"<[!-;=?-~]+>")  # a Message-ID or a link: printable ASCII, no < > inside
_LINE_LIMIT = 78
# Where a body frame leaves room for the children's lines and the confirmation link.
_CHILDREN_MARK = "\0mimamori:children\0"
_URL_MARK = "\0mimamori:link\0"
_NEWLINE = re.compile(rb"\r\n|\r|\n")  # as Python's email generator ends lines


class BroadcastMail:
    """The bytes of one broadcast's mails, built without an EmailMessage per recipient.

    A broadcast's mails differ only in To, Date, Message-ID and the body (the children named,
    the confirmation link). Building the first mail of each school (and round, and character
    set) the ordinary way gives a header block, folded lines of its Subject and From included;
    later mails reuse it and only encode their own body, which is several times cheaper than
    Django's per-message MIME and header encoding. The first mail also proves the shortcut:
    rebuilt the fast way with the same values, it must come out byte for byte the same, or that
    school's mails are all built the ordinary way.
    """

    def __init__(self, *, subject: str, body: str, urgent: bool, answers: Sequence[str] = ()) -> None:
        # The answer choices are the broadcast's, the same in every mail: part of the frame.
        self.subject, self.body, self.urgent, self.answers = subject, body, urgent, tuple(answers)
        self._heads: dict[tuple[int, bool, bool, str], list[bytes] | None] = {}
        self._date: tuple[int, str] = (0, "")
        self._frames: dict[tuple[int, bool, bool], tuple[str, str, str] | None] = {}
        # The frames as a character set other than UTF-8 writes them (substituted once).
        self._written_frames: dict[tuple[int, bool, bool, str], tuple[str, str, str] | None] = {}

    def as_bytes(
        self,
        *,
        school: School,
        to: str,
        children: Children,
        message_id: str,
        confirmation_url: str | None = None,
        reminder: bool = False,
        unsubscribe_url: str | None = None,
        charset: str = charsets.UTF8,
    ) -> bytes:
        """The mail to ``to``, written in ``charset`` (its carrier profile's)."""
        own = {"To": to, "Message-ID": message_id}
        if unsubscribe_url is not None:
            own["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        key = (school.pk, reminder, unsubscribe_url is not None, charset)
        plain = (
            _PLAIN_ADDRESS.fullmatch(to) is not None
            and all(
                _PLAIN_VALUE.fullmatch(value) and len(name) + 2 + len(value) <= _LINE_LIMIT
                for name, value in own.items()
                if name != "To"
            )
            and len(to) + len("To: ") <= _LINE_LIMIT
        )
        if plain and self._heads.get(key):
            text = self._body(school, children, confirmation_url, reminder, charset)
            own["Date"] = self._now()
            return self._fast(self._heads[key] or [], own, text, charset)
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
            unsubscribe_url=unsubscribe_url,
            answers=self.answers,
        )
        content = messages.as_bytes(mail, charset)
        if plain and key not in self._heads:
            self._heads[key] = self._learn(content, own, charsets.body_text(str(mail.body), charset), charset)
        return content

    def _now(self) -> str:
        """The Date header, made once a second: with the local offset it costs as much as
        filling in the rest of the header block."""
        second = int(time.time())
        if self._date[0] != second:
            self._date = (second, formatdate(second, localtime=settings.EMAIL_USE_LOCALTIME))
        return self._date[1]

    def _body(
        self, school: School, children: Children, confirmation_url: str | None, reminder: bool, charset: str
    ) -> str:
        """The text as ``charset`` writes it, from a frame rendered once per school and kind with
        the children's lines and the link left open, when the frame proved to give exactly what
        the template does."""
        key = (school.pk, reminder, confirmation_url is not None)
        if key not in self._frames:
            self._frames[key] = self._learn_frame(school, children, confirmation_url, reminder)
        frame = self._frames[key]
        if frame is not None and charset != charsets.UTF8:
            written = (*key, charset)
            if written not in self._written_frames:
                self._written_frames[written] = self._learn_written_frame(
                    frame, school, children, confirmation_url, reminder, charset
                )
            frame = self._written_frames[written]
        if frame is None:
            text = self._render(school, [child_line(c) for c in children], confirmation_url, reminder)
            return charsets.body_text(text, charset)
        return self._fill(frame, children, confirmation_url, charset)

    def _render(self, school: School, lines: list[str], confirmation_url: str | None, reminder: bool) -> str:
        context = _broadcast_context(
            school, self.subject, self.body, self.urgent, lines, confirmation_url, reminder, self.answers
        )
        return messages.render_body(TEMPLATE, context)

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

    def _learn_written_frame(
        self,
        frame: tuple[str, str, str],
        school: School,
        children: Children,
        confirmation_url: str | None,
        reminder: bool,
        charset: str,
    ) -> tuple[str, str, str] | None:
        """The frame with its text as ``charset`` writes it, if filling it in gives what writing
        the whole text does (the marks sit between lines, so a substitution never spans them)."""
        before, middle, after = (charsets.body_text(part, charset) for part in frame)
        written = (before, middle, after)
        lines = [child_line(c) for c in children]
        expected = charsets.body_text(self._render(school, lines, confirmation_url, reminder), charset)
        return written if self._fill(written, children, confirmation_url, charset) == expected else None

    @staticmethod
    def _fill(
        frame: tuple[str, str, str],
        children: Children,
        confirmation_url: str | None,
        charset: str = charsets.UTF8,
    ) -> str:
        before, middle, after = frame
        # A child's line is short (names and class names have a maximum length), so substituting
        # is all a character set does to it.
        lines = "".join(charsets.written(child_line(child), charset) + "\n" for child in children)
        return before + lines + middle + (confirmation_url or "") + after

    @staticmethod
    def _fast(head: list[bytes], own: dict[str, str], text: str, charset: str) -> bytes:
        """The mail from a learnt header block, ``own`` filling the headers left open."""
        lines = [
            f"{line[1:].decode()}: {own[line[1:].decode()]}".encode() if line[:1] == b"\0" else line
            for line in head
        ]
        if charset == charsets.ISO2022JP:  # 7bit: the text itself, its lines ended by CRLF
            encoded = _NEWLINE.sub(b"\r\n", text.encode("iso2022_jp"))
        else:
            encoded = base64mime.body_encode(text.encode("utf-8")).replace("\n", "\r\n").encode("ascii")
        return b"\r\n".join(lines) + b"\r\n\r\n" + encoded

    def _learn(self, content: bytes, own: dict[str, str], text: str, charset: str) -> list[bytes] | None:
        """The header block with each mail's own headers (To, Date, Message-ID and, when there
        is one, List-Unsubscribe) left open, if the shortcut is exact. The other headers are
        the same in every mail of the school and kind, folded lines and all."""
        header, _, _ = content.partition(b"\r\n\r\n")
        lines = header.split(b"\r\n")
        names: list[str] = []  # the header each line belongs to
        for line in lines:
            if line[:1] in (b" ", b"\t"):
                if not names:
                    return None
                names.append(names[-1])
            else:
                names.append(line.partition(b": ")[0].decode())
        found = {name: line for name, line in zip(names, lines, strict=True) if line[:1] not in (b" ", b"\t")}
        date = found.get("Date", b"")[len(b"Date: ") :].decode()
        own = {**own, "Date": date}
        if not date or any(found.get(name) != f"{name}: {value}".encode() for name, value in own.items()):
            return None
        if sum(name in own for name in names) != len(own):
            return None  # a header of a mail's own written twice, or folded
        head = [
            b"\0" + name.encode() if name in own else line for name, line in zip(names, lines, strict=True)
        ]
        return head if self._fast(head, own, text, charset) == content else None

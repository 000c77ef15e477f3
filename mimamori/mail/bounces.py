"""What a refusal says about an address: from the SMTP reply while sending, or from a bounce
that comes back later (a DSN, RFC 3464, or a carrier's plain-text notice).

A relay accepts with 250 and bounces hours later, so most dead addresses are only learnt from
the bounce. flufl.bounce (Mailman's bounce detectors) decides whether a message is a bounce at
all and whether it is permanent; the DSN's own fields, where there are some, give the status
code and the server's words. Out-of-office replies and other auto-replies are not bounces (no
detector matches them), nor is a DSN that only says the relay is still trying (Action: delayed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from flufl.bounce import all_failures

from mimamori.mail.smtp import Outcome, Reply

# An enhanced status code (RFC 3463): class.subject.detail.
STATUS_CODE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# What servers without enhanced codes say for a mailbox that does not exist (Postfix, Exim,
# Gmail, the Japanese carriers' gateways).
NO_SUCH_USER = re.compile(
    r"user unknown|unknown user|no such user|does not exist|mailbox unavailable|"
    r"recipient address rejected|invalid recipient|unknown recipient|no mailbox",
    re.IGNORECASE,
)
TEXT_MAX = 500


@dataclass(frozen=True)
class Failure:
    """An address's mail was refused: for good (``permanent``) or for now (the relay gave up)."""

    permanent: bool
    status: str  # the enhanced status code, e.g. "5.1.1", or "" when none was given
    text: str  # the server's own words, for staff

    @property
    def no_such_user(self) -> bool:
        """The address is wrong (5.1.x: no such mailbox, no such domain, bad syntax)."""
        if not self.permanent:
            return False
        if self.status:
            return self.status.startswith("5.1.")
        return NO_SUCH_USER.search(self.text) is not None


def _status(text: str) -> str:
    found = STATUS_CODE.search(text)
    return ".".join(found.groups()) if found else ""


def from_reply(reply: Reply) -> Failure:
    """The failure an SMTP reply (``550 5.1.1 <…>: User unknown``) stands for."""
    return Failure(reply.outcome is Outcome.PERMANENT, _status(reply.text), reply.text[:TEXT_MAX])


def _delivery_status(message: Message) -> list[Message]:
    """The per-recipient field groups of a DSN's message/delivery-status part."""
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            groups = payload if isinstance(payload, list) else []
            return [group for group in groups[1:] if isinstance(group, Message)]
    return []


def from_message(message: Message) -> Failure | None:
    """The failure a bounce reports, or None if ``message`` is not a bounce."""
    groups = _delivery_status(message)
    for group in groups:
        action = (group.get("Action") or "").strip().lower()
        if action != "failed":
            continue  # delayed, delivered, relayed, expanded: not a failure
        status = _status(group.get("Status") or "")
        text = " ".join((group.get("Diagnostic-Code") or group.get("Status") or "").split())
        return Failure(status.startswith("5"), status, text[:TEXT_MAX])
    if groups:
        return None  # a DSN that reports no failure
    # Not a DSN: a carrier's or an old relay's own format, which flufl.bounce's detectors know.
    # An out-of-office or other automatic answer matches none of them.
    temporary, permanent = all_failures(message)
    if not (temporary or permanent):
        return None
    text = _plain_text(message)
    found = NO_SUCH_USER.search(text) or STATUS_CODE.search(text)
    words = text[max(0, found.start() - 200) : found.end() + 200] if found else text[:TEXT_MAX]
    return Failure(bool(permanent), _status(text), " ".join(words.split())[:TEXT_MAX])


def _plain_text(message: Message) -> str:
    texts = []
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                texts.append(payload.decode(part.get_content_charset() or "utf-8", errors="replace"))
    return "\n".join(texts)

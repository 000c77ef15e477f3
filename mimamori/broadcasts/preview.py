"""The mail a guardian gets, for staff to see before they send (the compose's last step).

Built by the builder delivery uses (mails.BroadcastMail, the same arguments as
delivery._sender gives it), for the first address of the audience: the children it names,
the ■受信確認のお願い block and its link when a confirmation is requested, the one-click
unsubscribe header where the municipality offers it. Only what differs in every mail is a
stand-in: To is the real first address, Date and Message-ID are this moment's, and the
personal links carry PERSONAL_TOKEN where each mail has its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from django.conf import settings
from django.db.models.functions import Lower

from mimamori.broadcasts import mails, targeting
from mimamori.broadcasts.models import Broadcast, BroadcastKind
from mimamori.mail import charsets
from mimamori.mail.messages import BUILD_ERRORS
from mimamori.registry.models import Address

# Stands for each mail's own confirmation token and unsubscribe seal in the preview.
PERSONAL_TOKEN = "x" * 16


@dataclass(frozen=True)
class Sample:
    """One guardian's mail: its bytes as they would go to the relay, and the parts staff read."""

    content: bytes
    sender: str
    to: str
    subject: str
    body: str
    confirmation_url: str | None  # the stand-in link, where the mail carries one
    unsubscribe_url: str | None


def sample(broadcast: Broadcast) -> Sample | None:
    """The mail the first address of the audience would get; None when nobody would get one
    (or data stored before the input rule makes it unbuildable: its mails fail with the reason)."""
    audience = targeting.audience(broadcast)
    first = audience.annotate(key=Lower("email")).order_by("key").values_list("key", flat=True).first()
    if first is None:
        return None
    rows: list[Address] = list(
        audience.annotate(key=Lower("email"))
        .filter(key=first)
        .select_related("registrant__school__municipality")
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana")
    )
    # As the fan-out writes it: the lowest-numbered address spelling, the lowest-numbered school.
    to = min(row.email for row in rows)
    children = [row.registrant for row in rows]
    school = min((child.school for child in children), key=lambda s: s.pk)
    confirmation_url = mails.confirmation_url(PERSONAL_TOKEN) if broadcast.request_confirmation else None
    unsubscribe_url = (
        f"{settings.BASE_URL}/u/{PERSONAL_TOKEN}/"
        if broadcast.kind != BroadcastKind.MAINTENANCE and school.municipality.one_click_unsubscribe
        else None
    )
    builder = mails.BroadcastMail(
        subject=broadcast.subject, body=broadcast.body, urgent=broadcast.urgent, answers=broadcast.answers
    )
    try:
        content = builder.as_bytes(
            school=school,
            to=to,
            children=children,
            message_id=mails.new_message_id(school),
            confirmation_url=confirmation_url,
            reminder=False,
            unsubscribe_url=unsubscribe_url,
            charset=charsets.UTF8,
        )
    except BUILD_ERRORS:
        return None
    parsed = BytesParser(policy=policy.default).parsebytes(content)
    assert isinstance(parsed, EmailMessage)
    text = parsed.get_body(("plain",))
    return Sample(
        content=content,
        sender=str(parsed["From"]),
        to=str(parsed["To"]),
        subject=str(parsed["Subject"]),
        body=text.get_content() if text is not None else "",
        confirmation_url=confirmation_url,
        unsubscribe_url=unsubscribe_url,
    )

"""Recording a read confirmation (S5): the verb behind the 「確認しました」 button.

A mail's link carries an opaque random token (see broadcasts/fanout.py). Only a POST reaches
record_confirmation; the GET page merely shows the message, because mail scanners open every
link. A registrant is confirmed by the first confirmation from any of its mails (slot 1 or 2,
or a shared sibling address, which confirms every child it names); later ones change nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery, Recipient
from mimamori.receipts.models import Receipt

TOKEN_ALPHABET = frozenset("0123456789abcdef")


class Outcome(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"


class LinkExpired(Exception):
    pass


@dataclass(frozen=True)
class Link:
    """What recording a confirmation needs to know about the mail a token belongs to."""

    delivery_id: int
    broadcast_id: int
    sent_at: datetime

    @classmethod
    def of(cls, delivery: Delivery) -> Link:
        broadcast = delivery.broadcast
        return cls(delivery.pk, delivery.broadcast_id, broadcast.send_requested_at or broadcast.created_at)

    @property
    def expires_at(self) -> datetime:
        return self.sent_at + timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS)


def confirmation_url(token: str) -> str:
    # Short, so that it survives carriers' line wrapping; the guardian page lives under /c/.
    return f"{settings.BASE_URL}/c/{token}/"


def _well_formed(token: str) -> bool:
    return 40 <= len(token) <= 64 and set(token) <= TOKEN_ALPHABET


def find_link(token: str) -> Link | None:
    """The mail a link belongs to, as just what a POST needs, or None (a 404).

    This is the first statement of the request a whole city sends within minutes of an
    emergency mail: three values through the token's unique index, without building the
    broadcast, school and municipality that find_delivery() loads for the page.
    """
    if not _well_formed(token):
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT d.id, d.broadcast_id, COALESCE(b.send_requested_at, b.created_at)"  # noqa: S608
            f" FROM {_table(Delivery)} d JOIN {_table(Broadcast)} b ON b.id = d.broadcast_id"
            " WHERE d.confirmation_token = %s AND b.request_confirmation",
            [token],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    delivery_id, broadcast_id, sent_at = row
    if not isinstance(sent_at, datetime):  # SQLite hands back the stored UTC text
        sent_at = datetime.fromisoformat(sent_at).replace(tzinfo=UTC)
    return Link(delivery_id, broadcast_id, sent_at)


def find_delivery(token: str) -> Delivery | None:
    """The mail a link belongs to, or None for unknown or malformed tokens (a 404)."""
    if not _well_formed(token):
        return None
    try:
        # get(), not first(): first() adds ORDER BY id, which can make PostgreSQL walk the
        # primary key instead of the token's unique index (7 ms instead of 0.1 ms a request).
        return Delivery.objects.select_related("broadcast", "school__municipality").get(
            confirmation_token=token, broadcast__request_confirmation=True
        )
    except Delivery.DoesNotExist:
        return None


def is_expired(mail: Delivery | Link) -> bool:
    link = mail if isinstance(mail, Link) else Link.of(mail)
    return timezone.now() >= link.expires_at


def is_confirmed(delivery: Delivery) -> bool:
    """Whether every registrant the mail names has confirmed, through this mail or another."""
    receipt = Receipt.objects.filter(
        broadcast_id=delivery.broadcast_id, registrant_id=OuterRef("registrant_id")
    )
    return not Recipient.objects.filter(delivery=delivery).exclude(Exists(receipt)).exists()


def record_confirmation(mail: Delivery | Link) -> Outcome:
    """Confirm every registrant the mail names that has not confirmed yet; durable on return."""
    link = mail if isinstance(mail, Link) else Link.of(mail)
    if is_expired(link):
        raise LinkExpired
    # Two statements in one transaction, whatever the number of children the mail names: this
    # is the request a whole city sends within minutes of an emergency mail (bench/confirmations.py
    # measured 8 round trips a confirmation with a savepoint per child, 5 now). ON CONFLICT keeps
    # a sibling confirmed already from undoing the others, and RETURNING says whom this POST
    # confirmed, so each group's counter grows by exactly the receipts inserted.
    # Only table names from our own models are formatted in; every value is a parameter.
    receipt = _table(Receipt)
    recipient = _table(Recipient)
    group = _table(AudienceGroup)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {receipt} (broadcast_id, registrant_id, delivery_id, confirmed_at)"  # noqa: S608
            f" SELECT %s, r.registrant_id, %s, %s FROM {recipient} r WHERE r.delivery_id = %s"
            " ON CONFLICT (broadcast_id, registrant_id) DO NOTHING RETURNING registrant_id",
            [link.broadcast_id, link.delivery_id, now, link.delivery_id],
        )
        confirmed = [row[0] for row in cursor.fetchall()]
        if confirmed:
            marks = ", ".join(["%s"] * len(confirmed))
            cursor.execute(
                f"UPDATE {group} SET confirmed = confirmed + (SELECT COUNT(*) FROM {recipient} r"  # noqa: S608
                f" WHERE r.delivery_id = %s AND r.group_id = {group}.id AND r.registrant_id IN ({marks}))"
                f" WHERE id IN (SELECT r.group_id FROM {recipient} r"
                f" WHERE r.delivery_id = %s AND r.registrant_id IN ({marks}))",
                [link.delivery_id, *confirmed, link.delivery_id, *confirmed],
            )
    return Outcome.CONFIRMED if confirmed else Outcome.ALREADY


def _table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)

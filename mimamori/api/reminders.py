"""Reminder endpoints (P3): send one to the unconfirmed of a broadcast, list those sent.

The broadcast is fetched through mimamori.broadcasts.access (a 404 outside the token's scope);
receipts.reminders decides whether a reminder may go and to whom.
"""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from django.http import HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError

from mimamori.api.auth import staff_of
from mimamori.api.broadcasts import ONE, BroadcastId
from mimamori.api.schemas import LocalTime, errors
from mimamori.broadcasts.access import get_broadcast
from mimamori.receipts.models import Reminder
from mimamori.receipts.reminders import ReminderRefused, send_reminder

router = Router(tags=["broadcasts"])


class ReminderSent(Schema):
    reminder: int = Field(description="The reminder's number: 1 for the first.")
    messages: int = Field(description="Mails being sent again.")


class ReminderOut(Schema):
    number: int
    sent_at: LocalTime
    automatic: bool
    sent_by: str | None = Field(description="The staff member's login; null when automatic.")
    messages: int

    @staticmethod
    def resolve_automatic(obj: Reminder) -> bool:
        return obj.created_by_id is None

    @staticmethod
    def resolve_sent_by(obj: Reminder) -> str | None:
        return obj.created_by.username if obj.created_by else None


@router.post("/broadcasts/{broadcast_id}/reminders", response={202: ReminderSent, **ONE, **errors(409)})
def send_broadcast_reminder(request: HttpRequest, broadcast_id: BroadcastId) -> Status[ReminderSent]:
    user = staff_of(request)
    broadcast = get_broadcast(user, broadcast_id)
    try:
        count = send_reminder(broadcast, user)
    except ReminderRefused as refusal:
        raise HttpError(409, str(refusal)) from None
    return Status(202, ReminderSent(reminder=broadcast.reminders_sent, messages=count))


@router.get("/broadcasts/{broadcast_id}/reminders", response={200: list[ReminderOut], **ONE})
def list_broadcast_reminders(request: HttpRequest, broadcast_id: BroadcastId) -> list[Reminder]:
    broadcast = get_broadcast(staff_of(request), broadcast_id)
    return list(Reminder.objects.filter(broadcast=broadcast).select_related("created_by").order_by("number"))

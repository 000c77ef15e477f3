"""受信履歴 (B13): the broadcasts sent to the logged-in guardian's child, newest first.

A guardian who deleted a mail (or whose phone never got it) reads it here in full: subject,
body, the sending school and the time, and whether it has been confirmed, with the link to
the 受信確認 page while that is still open. For a 安否確認 (B1) it shows the answer recorded
for this child, and the link to give or change it while answering is open. Like every portal
page it takes no ID: the child is the logged-in guardian's, and a page number is all the URL
carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.core.paginator import Paginator
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Recipient
from mimamori.portal.decorators import guardian_required
from mimamori.receipts.confirming import is_expired
from mimamori.receipts.models import Receipt
from mimamori.registry.models import Registrant, School

PER_PAGE = 20


@dataclass(frozen=True)
class Entry:
    broadcast: Broadcast
    school: School  # the sender, as in the mail's From (S2)
    sent_at: datetime
    asks_confirmation: bool
    confirmed: bool
    confirm_token: str  # "" when there is no link to follow (none, expired or confirmed already)
    asks_answers: bool = False
    answer: str = ""  # the choice recorded for this child, for a 安否確認


def entries_for(registrant: Registrant, broadcasts: list[Broadcast]) -> list[Entry]:
    """One entry per broadcast, from the child's lowest slot that got it (the mail the guardian
    most likely holds: its link confirms for the child like any other of the mail's links)."""
    mails: dict[int, Recipient] = {}
    for recipient in (
        Recipient.objects.filter(registrant=registrant, broadcast__in=broadcasts)
        .select_related("delivery__school__municipality", "delivery__broadcast")
        .order_by("-slot")
    ):
        mails[recipient.broadcast_id] = recipient  # the lowest slot is written last
    confirmed = dict(
        Receipt.objects.filter(registrant=registrant, broadcast__in=broadcasts).values_list(
            "broadcast_id", "answer"
        )
    )
    entries = []
    for broadcast in broadcasts:
        delivery = mails[broadcast.pk].delivery
        done = broadcast.pk in confirmed
        asks = broadcast.request_confirmation and bool(delivery.confirmation_token)
        answers = broadcast.answers
        answer = confirmed.get(broadcast.pk)
        # An answer can be changed until answering closes; a confirmation is given once.
        changeable = bool(answers) and broadcast.answers_closed_at is None
        open_link = asks and (not done or changeable) and not is_expired(delivery)
        entries.append(
            Entry(
                broadcast=broadcast,
                school=delivery.school,
                sent_at=broadcast.send_requested_at or broadcast.created_at,
                asks_confirmation=asks,
                confirmed=done,
                confirm_token=(delivery.confirmation_token or "") if open_link else "",
                asks_answers=bool(answers),
                answer=answers[answer] if answer is not None and answer < len(answers) else "",
            )
        )
    return entries


@guardian_required
@require_GET
def history(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    sent_to_child = Recipient.objects.filter(registrant=registrant).values("broadcast_id")
    broadcasts = (
        Broadcast.objects.filter(pk__in=sent_to_child)
        .exclude(status=BroadcastStatus.DRAFT)
        .order_by(Coalesce("send_requested_at", "created_at").desc(), "-pk")
    )
    page = Paginator(broadcasts, PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "registrant": registrant,
        "school": registrant.school,
        "municipality": registrant.school.municipality,
        "page": page,
        "entries": entries_for(registrant, list(page.object_list)),
    }
    return render(request, "portal/history.html", context)

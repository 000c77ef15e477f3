"""Closing answering (B1): the verb behind 「回答を締め切る」 in the console and the API.

After it, a guardian's page shows the answer given but takes no other; the tally stops moving
and is what staff report. Audited, as every staff action that changes what guardians can do.
"""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest

from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.broadcasts.models import Broadcast
from mimamori.broadcasts.targeting import broadcast_municipality
from mimamori.receipts.answering import close_answers


def closable(broadcast: Broadcast) -> bool:
    """Answering can be closed once the broadcast has left (not a draft, not still scheduled or
    cancelled), for a broadcast that asks an answer, and only once."""
    return (
        bool(broadcast.answers)
        and broadcast.answers_closed_at is None
        and broadcast.send_requested_at is not None
    )


def close_answering(broadcast: Broadcast, by: User, request: HttpRequest | None = None) -> bool:
    """Close answering for ``broadcast``; False (and nothing recorded) if it cannot be closed or
    was closed already, perhaps by a colleague a moment before."""
    if not closable(broadcast):
        return False
    with transaction.atomic():
        if not close_answers(broadcast):
            return False
        audit.record(
            "broadcast.answers_closed",
            actor=by,
            target=f"broadcast {broadcast.pk}",
            municipality=broadcast_municipality(broadcast),
            request=request,
            subject=broadcast.subject,
        )
    return True

"""Console: send a reminder to the unconfirmed of a broadcast by hand (P3).

The broadcast is fetched through broadcasts.access (404 outside the staff member's scope);
receipts.reminders decides whether a reminder may go and to whom.
"""

from __future__ import annotations

from django.contrib import messages as flash
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from mimamori.broadcasts.access import get_broadcast
from mimamori.console.decorators import staff_required
from mimamori.console.views import _staff
from mimamori.receipts.reminders import ReminderRefused, send_reminder


@staff_required
@require_POST
def broadcast_remind(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    try:
        count = send_reminder(found, user)
    except ReminderRefused as refusal:
        flash.error(request, str(refusal))
    else:
        text = ngettext(
            "Sending a reminder to %(count)d address of households that have not confirmed.",
            "Sending a reminder to %(count)d addresses of households that have not confirmed.",
            count,
        )
        flash.success(request, text % {"count": count})
    return redirect("console:broadcast", broadcast_id=found.pk)

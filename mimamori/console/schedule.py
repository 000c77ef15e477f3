"""Console controls for scheduled sends (P7) on a broadcast's page: send at a time, cancel.

The broadcast is fetched through broadcasts.access, so one out of the user's scope is a 404;
the verbs (broadcasts.sending.schedule and cancel) audit what staff do.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from mimamori.broadcasts import sending
from mimamori.broadcasts.access import get_broadcast
from mimamori.console.decorators import staff_required
from mimamori.console.views import _staff
from mimamori.maintenance.forms import LOCAL_FORMATS, LocalDateTimeInput


class ScheduleForm(forms.Form):
    at = forms.DateTimeField(
        label=gettext_lazy("Send at"), input_formats=LOCAL_FORMATS, widget=LocalDateTimeInput()
    )


@staff_required
@require_POST
def broadcast_schedule(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        flash.error(request, _("Enter the date and time to send at."))
    else:
        try:
            done = sending.schedule(found, form.cleaned_data["at"], by=user)
        except ValidationError as error:
            for message in error.messages:
                flash.error(request, message)
        else:
            if done:
                when = formats.date_format(timezone.localtime(found.send_at), "Y-m-d H:i")
                flash.success(request, _("The broadcast will be sent at %(when)s.") % {"when": when})
            else:
                flash.info(request, _("This broadcast was already sent or cancelled; nothing was scheduled."))
    return redirect("console:broadcast", broadcast_id=found.pk)


@staff_required
@require_POST
def broadcast_cancel(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_broadcast(user, broadcast_id)
    if sending.cancel(found, by=user):
        flash.success(request, _("The scheduled send is cancelled. The broadcast will not be sent."))
    else:
        flash.info(request, _("This broadcast is not scheduled (any more), so it could not be cancelled."))
    return redirect("console:broadcast", broadcast_id=found.pk)

"""Console pages for maintenance windows (S9): list, plan, change (move) and cancel.

Centre staff only: anyone else gets a 404, as for any object outside their scope. The work is
done by mimamori.maintenance.windows; the notices go out from the sweep.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mimamori.console.decorators import staff_required
from mimamori.console.views import _page, _render, _staff
from mimamori.maintenance import forms, notices, windows
from mimamori.maintenance.models import MaintenanceWindow


def _centre(request: HttpRequest) -> Any:
    user = _staff(request)
    if not windows.can_plan(user):
        raise Http404
    return user


# The templates live in mimamori/maintenance/templates/console/, with their translations.


@staff_required
@require_GET
def maintenance_windows(request: HttpRequest) -> HttpResponse:
    _centre(request)
    found = MaintenanceWindow.objects.prefetch_related("municipalities").order_by("-starts_at", "-pk")
    return _render(request, "maintenance_list.html", {"page": _page(request, found), "now": timezone.now()})


def _save(request: HttpRequest, window: MaintenanceWindow | None) -> HttpResponse:
    user = _centre(request)
    form = forms.WindowForm(request.POST) if request.method == "POST" else None
    if form is None:
        form = forms.WindowForm() if window is None else forms.WindowForm.for_window(window)
    elif form.is_valid():
        data = form.cleaned_data
        fields = {
            "starts_at": data["starts_at"],
            "ends_at": data["ends_at"],
            "message": data["message"],
            "municipality_codes": data["municipalities"],
            "request": request,
        }
        if request.POST.get("back"):  # from the confirmation, to correct the form
            return _render(request, "maintenance_form.html", {"form": form, "window": window})
        at_once = notices.mailed_at_once(
            data["starts_at"], data["ends_at"], list(data["municipalities"]), window=window
        )
        if at_once.addresses and request.POST.get("confirmed") != "1":
            # Saving would mail these guardians now, not at the lead time: ask first.
            context = {"form": form, "window": window, "at_once": at_once}
            return _render(request, "maintenance_confirm.html", context)
        try:
            if window is None:
                windows.plan(user, **fields)
                flash.success(request, forms.PLANNED)
                if at_once.addresses:
                    flash.info(request, forms.mailing_now(at_once.addresses))
            elif windows.change(window, user, **fields):
                flash.success(request, forms.CHANGED)
            else:
                flash.info(request, forms.UNCHANGED)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            return redirect("console:maintenance_windows")
    return _render(request, "maintenance_form.html", {"form": form, "window": window})


@staff_required
@require_http_methods(["GET", "POST"])
def maintenance_new(request: HttpRequest) -> HttpResponse:
    return _save(request, None)


@staff_required
@require_http_methods(["GET", "POST"])
def maintenance_edit(request: HttpRequest, window_id: int) -> HttpResponse:
    _centre(request)
    return _save(request, get_object_or_404(MaintenanceWindow, pk=window_id))


@staff_required
@require_POST
def maintenance_cancel(request: HttpRequest, window_id: int) -> HttpResponse:
    user = _centre(request)
    window = get_object_or_404(MaintenanceWindow, pk=window_id)
    if windows.cancel(window, user, request=request):
        flash.success(request, forms.CANCELLED)
    else:
        flash.info(request, forms.NOT_CANCELLED)
    return redirect("console:maintenance_windows")

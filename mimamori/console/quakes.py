"""The console's 地震 page (B10): the earthquake alerts in the user's scope with the report that
raised each, a cancel button while one is held, a drill button, and each municipality's
earthquake settings.

The centre and a municipality's own staff use it (school staff get a 404, as for anything out
of reach); the verbs in mimamori/quakes do the work and the auditing.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mimamori import text
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.quakes import alerts, configuration
from mimamori.quakes.models import EarthquakeSettings, QuakeAlert, codes_problem
from mimamori.registry import answers as answer_rules
from mimamori.registry.access import get_municipality, municipalities_for

LIST_SIZE = 100


def _codes(value: str) -> list[str]:
    return [code for code in re.split(r"[\s,、]+", value.strip()) if code]


class EarthquakeSettingsForm(forms.ModelForm):
    city_codes = forms.CharField(
        label=gettext_lazy("JMA city codes"),
        required=False,
        validators=[text.single_line],
        help_text=gettext_lazy(
            "JMA's 7-digit city codes, separated by spaces (岩見沢市: 0121000). Empty: off."
        ),
    )
    area_codes = forms.CharField(
        label=gettext_lazy("JMA area codes"),
        required=False,
        validators=[text.single_line],
        help_text=gettext_lazy(
            "JMA's 3-digit earthquake areas whose intensity also counts, for the 震度速報 that comes "
            "first. An area's intensity is its strongest station's: it may fire for a neighbouring city."
        ),
    )
    answers = forms.CharField(
        label=gettext_lazy("Answer choices of the earthquake mail"),
        widget=forms.Textarea(attrs={"rows": 4}),
        validators=[text.multi_line],
        help_text=gettext_lazy("One choice per line, 2 to 6."),
    )

    class Meta:
        model = EarthquakeSettings
        fields = list(configuration.FIELDS)
        widgets = {"body": forms.Textarea(attrs={"rows": 8})}
        help_texts = {
            "subject": gettext_lazy(
                "Filled in: {場所} the places that reached the threshold, {震度} the intensity."
            ),
            "body": gettext_lazy("Filled in: {場所} {震度} {発生時刻} {震源}."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            config = self.instance
            self.initial.update(
                city_codes=" ".join(config.city_codes),
                area_codes=" ".join(config.area_codes),
                answers="\n".join(config.answers),
            )

    def _clean_codes(self, name: str, kind: str) -> list[str]:
        codes = _codes(self.cleaned_data[name])
        if (problem := codes_problem(codes, kind)) is not None:
            raise ValidationError(problem)
        return codes

    def clean_city_codes(self) -> list[str]:
        return self._clean_codes("city_codes", "city")

    def clean_area_codes(self) -> list[str]:
        return self._clean_codes("area_codes", "area")

    def clean_answers(self) -> list[str]:
        choices = [line.strip() for line in self.cleaned_data["answers"].splitlines() if line.strip()]
        if (problem := answer_rules.problem(choices)) is not None:
            raise ValidationError(problem)
        return choices


@staff_required
@require_GET
def quakes(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    if not alerts.can_manage(user):
        raise Http404
    towns = list(municipalities_for(user).select_related("earthquake"))
    rows = []
    for town in towns:
        config = getattr(town, "earthquake", None)
        rows.append({"municipality": town, "settings": config or EarthquakeSettings(municipality=town)})
    return _render(
        request,
        "quakes.html",
        {
            "alerts": alerts.alerts_for(user).select_related("cancelled_by", "started_by")[:LIST_SIZE],
            "municipalities": rows,
        },
    )


def _alert(request: HttpRequest, alert_id: int) -> QuakeAlert:
    user = _staff(request)
    if not alerts.can_manage(user):
        raise Http404
    try:
        return alerts.alerts_for(user).get(pk=alert_id)
    except QuakeAlert.DoesNotExist:
        raise Http404 from None


@staff_required
@require_POST
def quake_cancel(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = _alert(request, alert_id)
    if alerts.cancel(alert, _staff(request)):
        messages.success(request, _("The earthquake alert was cancelled: nothing was sent to guardians."))
    else:
        messages.error(request, _("Too late to cancel: the alert has already been sent or cancelled."))
    return redirect("console:quakes")


@staff_required
@require_POST
def quake_drill(request: HttpRequest, code: str) -> HttpResponse:
    user = _staff(request)
    if not alerts.can_manage(user):
        raise Http404
    municipality = get_municipality(user, code)
    alerts.start_drill(municipality, user)
    messages.success(
        request, _("Drill started: the staff who are told get the mail guardians would get, marked 訓練.")
    )
    return redirect("console:quakes")


@staff_required
@require_http_methods(["GET", "POST"])
def quake_settings(request: HttpRequest, code: str) -> HttpResponse:
    user = _staff(request)
    if not alerts.can_manage(user):
        raise Http404
    municipality = get_municipality(user, code)
    form = EarthquakeSettingsForm(request.POST or None, instance=alerts.settings_of(municipality))
    context = {"municipality": municipality, "form": form}
    if request.method == "POST":
        if not form.is_valid():
            return _render(request, "quake_settings.html", context, 400)
        values = {
            field: form.cleaned_data[field] for field in configuration.FIELDS if field in form.cleaned_data
        }
        try:
            changes = configuration.change_settings(municipality, values, by=user, request=request)
        except ValidationError as error:
            for field, problems in error.message_dict.items():
                form.add_error(field if field in form.fields else None, problems)
            return _render(request, "quake_settings.html", context, 400)
        if changes:
            messages.success(request, _("Saved. The change has been recorded in the audit log."))
        else:
            messages.info(request, _("Nothing was changed."))
        return redirect("console:quakes")
    return _render(request, "quake_settings.html", context)

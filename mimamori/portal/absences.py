"""The guardian's 欠席・遅刻連絡 (B11): report that the child will be absent or late on a date,
see the reports still to come, withdraw one.

One form and one list on one page, plain HTML (a phone without JavaScript files it the same).
Withdrawing names the date, not a row ID: the page only ever reaches the guardian's own child.
"""

from __future__ import annotations

import datetime

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import User
from mimamori.gates import absences
from mimamori.gates.models import Absence, AbsenceKind
from mimamori.portal.decorators import guardian_required
from mimamori.registry.models import Registrant


class AbsenceForm(forms.Form):
    day = forms.DateField(
        label=pgettext_lazy("school calendar", "Date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    kind = forms.ChoiceField(
        label=gettext_lazy("Absent or late"),
        choices=[(AbsenceKind.ABSENT, gettext_lazy("Absent")), (AbsenceKind.LATE, gettext_lazy("Late"))],
        widget=forms.RadioSelect,
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=Absence._meta.get_field("reason").max_length,
        validators=[text.multi_line],
        help_text=gettext_lazy(
            "For example: fever, hospital visit, family matters. For lateness, the expected time too."
        ),
        widget=forms.Textarea(attrs={"rows": 3}),
    )


def _guardian(request: HttpRequest) -> User:
    assert isinstance(request.user, User)  # guardian_required let only a guardian through
    return request.user


class WithdrawForm(forms.Form):
    day = forms.DateField()


def _page(request: HttpRequest, registrant: Registrant, form: AbsenceForm, status: int = 200) -> HttpResponse:
    context = {
        "registrant": registrant,
        "school": registrant.school,
        "municipality": registrant.school.municipality,
        "form": form,
        "reports": absences.upcoming(registrant),
    }
    return render(request, "portal/absences.html", context, status=status)


@guardian_required
@require_http_methods(["GET", "POST"])
def absence_reports(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    form = AbsenceForm(request.POST or None, initial={"day": timezone.localdate()})
    if request.method == "POST":
        if not form.is_valid():
            return _page(request, registrant, form)
        try:
            absence = absences.file(
                registrant,
                form.cleaned_data["day"],
                form.cleaned_data["kind"],
                form.cleaned_data["reason"],
                _guardian(request),
                request=request,
            )
        except ValidationError as error:
            form.add_error("day" if error.code in ("past", "far") else None, error)
            return _page(request, registrant, form)
        if absence.kind == AbsenceKind.LATE:
            said = _("The school has been told that your child will be late on %(day)s.")
        else:
            said = _("The school has been told that your child will be absent on %(day)s.")
        messages.success(request, said % {"day": _date(absence.day)})
        return redirect("portal:absences")
    return _page(request, registrant, form)


def _date(day: datetime.date) -> str:
    return date_format(day, "Y-m-d (D)")


@guardian_required
@require_POST
def absence_withdraw(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    form = WithdrawForm(request.POST)
    if form.is_valid() and absences.withdraw(
        registrant, form.cleaned_data["day"], _guardian(request), request=request
    ):
        messages.success(
            request,
            _("The report for %(day)s has been withdrawn.") % {"day": _date(form.cleaned_data["day"])},
        )
    else:
        messages.info(request, _("There is no report to withdraw for that date."))
    return redirect("portal:absences")

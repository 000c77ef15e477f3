"""The console's attendance pages of a school (B11): 本日の出欠 (today's 欠席連絡 by class and the
exception list made at the check time), 学校カレンダー (closed days and open Saturdays) and the
attendance settings (the school's check time; the municipality's choice to tell guardians).

Every school is fetched through registry.access.get_school, so staff reach only their scope;
the verbs in mimamori/gates change and audit.
"""

from __future__ import annotations

import datetime
from itertools import groupby

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import Role
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.gates import absences, attendance, calendar
from mimamori.gates.models import AttendanceCheck
from mimamori.registry.access import get_school

CALENDAR_DAYS_SHOWN = 120


@staff_required
@require_GET
def school_attendance(request: HttpRequest, school_id: int) -> HttpResponse:
    school = get_school(_staff(request), school_id)
    today = timezone.localdate()
    reports = list(absences.of_day(school, today))
    by_class = [
        {"grade": grade, "class_name": class_name, "reports": list(rows)}
        for (grade, class_name), rows in groupby(
            reports, key=lambda a: (a.registrant.grade, a.registrant.class_name)
        )
    ]
    check = AttendanceCheck.objects.filter(school=school, day=today).first()
    rows = list(attendance.listed(check)) if check is not None else []
    return _render(
        request,
        "attendance.html",
        {
            "school": school,
            "today": today,
            "by_class": by_class,
            "report_count": len(reports),
            "check": check,
            "rows": rows,
            "still_missing": attendance.still_missing(check).count() if check is not None else 0,
            "check_time": attendance.check_time_of(school),
            "school_day": calendar.is_school_day(school, today),
            "holiday": calendar.national_holiday(today),
        },
    )


class CalendarForm(forms.Form):
    first = forms.DateField(
        label=pgettext_lazy("school calendar", "Date"), widget=forms.DateInput(attrs={"type": "date"})
    )
    last = forms.DateField(
        label=gettext_lazy("Until (for several days)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    open = forms.TypedChoiceField(
        label=gettext_lazy("The school is"),
        choices=[
            ("0", gettext_lazy("Closed (no attendance check)")),
            ("1", gettext_lazy("Open (school day)")),
        ],
        coerce=lambda value: value == "1",
        widget=forms.RadioSelect,
    )
    note = forms.CharField(
        label=gettext_lazy("Note"), max_length=64, required=False, validators=[text.single_line]
    )

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        first, last = cleaned.get("first"), cleaned.get("last") or cleaned.get("first")
        if isinstance(first, datetime.date) and isinstance(last, datetime.date):
            if last < first:
                self.add_error("last", _("The end date is before the start date."))
            elif (last - first).days >= calendar.MAX_SPAN_DAYS:
                self.add_error("last", _("At most %(days)d days at once.") % {"days": calendar.MAX_SPAN_DAYS})
            cleaned["last"] = last
        return cleaned


@staff_required
@require_http_methods(["GET", "POST"])
def school_calendar(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    form = CalendarForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            changed = calendar.set_days(
                school,
                form.cleaned_data["first"],
                form.cleaned_data["last"],
                open_=form.cleaned_data["open"],
                note=form.cleaned_data["note"],
                by=user,
                request=request,
            )
            if changed:
                messages.success(request, _("Saved: %(count)d days changed.") % {"count": changed})
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect("console:school_calendar", school.pk)
        status = 400
    today = timezone.localdate()
    until = today + datetime.timedelta(days=CALENDAR_DAYS_SHOWN)
    return _render(
        request,
        "school_calendar.html",
        {
            "school": school,
            "form": form,
            "entries": calendar.entries(school, today),
            "holidays": calendar.holidays_between(today, until),
            "today": today,
        },
        status,
    )


class DayForm(forms.Form):
    day = forms.DateField()


@staff_required
@require_POST
def school_calendar_remove(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    form = DayForm(request.POST)
    if form.is_valid() and calendar.remove_day(school, form.cleaned_data["day"], by=user, request=request):
        messages.success(request, _("Removed: the date follows the usual calendar again."))
    else:
        messages.info(request, _("Nothing was changed."))
    return redirect("console:school_calendar", school.pk)


class CheckTimeForm(forms.Form):
    check_time = forms.TimeField(
        label=gettext_lazy("Attendance check time"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=gettext_lazy(
            "On school days at this time, the children with no arrival at the gate and no absence "
            "report are listed. Empty: no check."
        ),
    )


class TellGuardiansForm(forms.Form):
    tell_guardians = forms.BooleanField(
        label=gettext_lazy("Tell the guardians of a child not yet arrived by mail"),
        required=False,
        help_text=gettext_lazy(
            "Once, at the check time, at the addresses the guardian chose for gate mail: "
            "「まだ登校が確認できていません」. Applies to every school of the municipality."
        ),
    )


@staff_required
@require_http_methods(["GET", "POST"])
def school_gate_settings(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    municipality = school.municipality
    # The choice to mail guardians is the municipality's: its staff and the centre make it.
    may_tell = user.role in (Role.CENTRE, Role.MUNICIPALITY)
    tells = attendance.tells_guardians(school)
    time_form = CheckTimeForm(
        request.POST if "check_time" in request.POST else None,
        initial={"check_time": attendance.check_time_of(school)},
    )
    tell_form = TellGuardiansForm(
        request.POST if "tell" in request.POST and may_tell else None, initial={"tell_guardians": tells}
    )
    if request.method == "POST":
        changed = None
        if time_form.is_bound and time_form.is_valid():
            changed = attendance.set_check_time(
                school, time_form.cleaned_data["check_time"], by=user, request=request
            )
        elif tell_form.is_bound and tell_form.is_valid():
            changed = attendance.set_tell_guardians(
                municipality, tell_form.cleaned_data["tell_guardians"], by=user, request=request
            )
        if changed is not None:
            if changed:
                messages.success(request, _("Saved. The change has been recorded in the audit log."))
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect("console:school_gate_settings", school.pk)
    return _render(
        request,
        "school_gate_settings.html",
        {
            "school": school,
            "time_form": time_form,
            "tell_form": tell_form,
            "may_tell": may_tell,
            "tells": tells,
        },
        400 if request.method == "POST" else 200,
    )

"""Console pages for P8: upload a school's roster, print or re-issue registration letters.

The successful POST answers with the letters themselves, ready to print: the codes exist in
clear text only in that response, so there is no page to come back to for them later.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods, require_POST

from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.console.decorators import staff_required
from mimamori.registry.access import get_school
from mimamori.registry.letters import letters_html, reissue_registration_codes, style_sources
from mimamori.registry.models import RegistrantStatus, School
from mimamori.registry.registrants import Enrolment
from mimamori.registry.roster import MAX_ROSTER_BYTES, RosterError, import_roster


class RosterForm(forms.Form):
    file = forms.FileField(label=_("Roster file (CSV)"))


def _staff(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # staff_required let only a signed-in staff user through
    return user


def _pending(school: School) -> Any:
    """Registrants whose guardian has not finished the first login: they may need a new letter."""
    return (
        school.registrants.filter(status=RegistrantStatus.ACTIVE)
        .exclude(registration_code_digest="")
        .select_related("account")
        .order_by("grade", "class_name", "child_name_kana", "child_name")
    )


def _page(
    request: HttpRequest,
    school: School,
    form: RosterForm,
    errors: list[RosterError],
    status: int = 200,
    letters_error: str = "",
) -> HttpResponse:
    context = {
        "school": school,
        "form": form,
        "errors": errors,
        "letters_error": letters_error,
        "pending": _pending(school),
        "devmail_enabled": settings.DEVMAIL_ENABLED,
    }
    return render(request, "console/roster_upload.html", context, status=status)


@staff_required
@require_http_methods(["GET", "POST"])
def roster_upload(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    if request.method != "POST":
        return _page(request, school, RosterForm(), [])
    form = RosterForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, school, form, [], status=400)
    upload = form.cleaned_data["file"]
    if upload.size > MAX_ROSTER_BYTES:
        too_large = RosterError(0, "", str(_("The file is too large (at most 5 MB).")))
        return _page(request, school, form, [too_large], status=400)
    letters = io.StringIO()
    roster = import_roster(school, upload.read(), letters=letters)
    if not roster.ok:
        return _page(request, school, form, roster.errors, status=400)
    # One event per import, not per child: the count says how many were created.
    audit.record(
        "registrant.imported",
        actor=user,
        target=f"school {school.pk}",
        municipality=school.municipality,
        request=request,
        count=roster.created,
        tags=roster.tagged,
    )
    return HttpResponse(letters.getvalue())


@staff_required
@require_POST
def letters(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    ids = [value for value in request.POST.getlist("registrant") if value.isdigit() and len(value) < 19]
    # Only this school's active registrants (the list shows those without a password; a
    # registrant's page offers it for anyone): ids of other schools are ignored, never revealed.
    active = school.registrants.filter(status=RegistrantStatus.ACTIVE)
    chosen = list(active.filter(pk__in=ids).select_related("account", "school__municipality"))
    had_password = [r.pk for r in chosen if r.account.has_usable_password()]
    enrolments = reissue_registration_codes(chosen)
    if not enrolments:
        message = str(_("Please choose at least one child whose guardian has not logged in yet."))
        return _page(request, school, RosterForm(), [], status=400, letters_error=message)
    audit.record(
        "export.registration_letters",
        actor=user,
        target=f"school {school.pk}",
        municipality=school.municipality,
        request=request,
        registrants=[e.registrant.pk for e in enrolments],
        # Guardians who had a password: the letter is their way back in (P11).
        reissued_after_login=had_password,
    )
    return letters_response(enrolments)


def letters_response(enrolments: Sequence[Enrolment]) -> HttpResponse:
    """The printable letters page; the policy allows its own inline CSS by hash (django-csp)."""
    document = letters_html(enrolments)
    response = HttpResponse(document)
    response._csp_update = {"style-src": style_sources(document)}  # type: ignore[attr-defined]
    return response

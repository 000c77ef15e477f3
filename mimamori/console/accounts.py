"""Console pages for P11: locked-out logins and their unlocking, staff password resets.

Who reaches whom: registry.access.logins_for (guardians of the registrants in scope, staff
below) and accounts.access.staff_for; anyone else is a 404, as for any object out of scope.

A staff member's new password reaches them as a one-time link shown once to the admin who
reset it: staff rows often have no mail address, a link in the admin's hands is no worse than
the admin's own login, and the admin never learns or chooses the password. The old password
stops working at the reset (it may be the reason for it).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.forms import SetPasswordForm
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from mimamori.accounts import recovery
from mimamori.accounts.access import can_manage_staff, staff_for
from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.registry.access import logins_for
from mimamori.registry.logins import home_municipality
from mimamori.registry.models import Registrant


@staff_required
def lockouts(request: HttpRequest) -> HttpResponse:
    """Logins in scope locked out from some client address, newest first."""
    user = _staff(request)
    attempts = recovery.locked_attempts(logins_for(user).values("username"))
    accounts = {
        account.username: account
        for account in User.objects.filter(username__in={a.username for a in attempts}).select_related(
            "registrant__school", "school", "municipality"
        )
    }
    rows: dict[str, dict[str, Any]] = {}
    for attempt in attempts:
        row = rows.setdefault(
            attempt.username, {"account": accounts.get(attempt.username), "addresses": [], "last": attempt}
        )
        row["addresses"].append(attempt.ip_address)
    return _render(request, "lockouts.html", {"rows": list(rows.values())})


@staff_required
@require_POST
def unlock(request: HttpRequest, user_id: int) -> HttpResponse:
    user = _staff(request)
    account = logins_for(user).filter(pk=user_id).first()
    if account is None:
        raise Http404
    cleared = recovery.unlock(account.username)
    audit.record(
        "login.unlocked",
        actor=user,
        target=f"user {account.username}",
        municipality=home_municipality(account),
        request=request,
        cleared=cleared,
    )
    flash.success(request, _("The login %(username)s is unlocked.") % {"username": account.username})
    registrant = Registrant.objects.filter(account=account).first()
    if request.POST.get("back") == "registrant" and registrant is not None:
        return redirect("console:registrant", registrant_id=registrant.pk)
    return redirect("console:lockouts")


@staff_required
def staff_list(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    if not can_manage_staff(user):
        raise Http404
    found = staff_for(user).order_by("role", "municipality__code", "school__name", "username")
    return _render(request, "staff.html", {"staff": found})


@staff_required
@require_POST
@never_cache
def staff_password_reset(request: HttpRequest, user_id: int) -> HttpResponse:
    """Ends the staff member's password and shows a one-time link, once, to the admin."""
    user = _staff(request)
    account = staff_for(user).filter(pk=user_id).first()
    if account is None:
        raise Http404
    account.set_unusable_password()
    account.save(update_fields=["password"])
    hours = settings.MIMAMORI_STAFF_RESET_HOURS
    token = recovery.issue_reset(account, timedelta(hours=hours))
    recovery.unlock(account.username)
    audit.record(
        "staff.password_reset",
        actor=user,
        target=f"user {account.username}",
        municipality=home_municipality(account),
        request=request,
    )
    link = settings.BASE_URL + reverse("console:password_reset_confirm", args=[token])
    response = _render(request, "staff_reset_link.html", {"account": account, "link": link, "hours": hours})
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "POST"])
@never_cache
def password_reset_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The link an admin handed over: GET shows the form, POST sets the staff member's password."""
    reset = recovery.find_reset(token)
    if reset is None or not reset.user.is_console_user:
        return render(request, "console/password_reset_invalid.html", status=404)
    form = SetPasswordForm(reset.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = recovery.use_reset(token, form.cleaned_data["new_password1"])
        if account is None:
            return render(request, "console/password_reset_invalid.html", status=404)
        audit.record(
            "password_reset.completed",
            actor_name=account.username,
            target=f"user {account.username}",
            municipality=home_municipality(account),
            request=request,
        )
        if request.user.is_authenticated:
            auth_logout(request)
        flash.success(request, _("Your new password is set. Please log in with it."))
        return redirect(reverse("console:login"))
    return render(request, "console/password_reset_confirm.html", {"form": form})

"""The guardian site (S6): login, first login with the letter's code, 変更メニュー, addresses, オプション.

No page takes an ID: every page shows the registrant of the logged-in guardian, fetched by
guardian_required, so there is nothing to change in a URL to reach another child.
"""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from mimamori.accounts import throttle
from mimamori.accounts.recovery import unlock
from mimamori.audit import log as audit
from mimamori.gates import preferences as gate_preferences
from mimamori.portal.decorators import guardian_required
from mimamori.portal.forms import (
    AddressForm,
    FirstLoginForm,
    GuardianLoginForm,
    GuardianSetPasswordForm,
    OptionsForm,
    PasswordResetRequestForm,
)
from mimamori.registry import recovery
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import SLOTS, AddressStatus, Registrant
from mimamori.registry.registrants import complete_first_login, find_first_login, registrant_target

# authenticate() and the axes backend do the counting and the lockout page for the login form.
login_view = auth_views.LoginView.as_view(
    template_name="portal/login.html",
    authentication_form=GuardianLoginForm,
    next_page="portal:home",
)


def _slot_list(slots: list[int]) -> str:
    # "1、2" in Japanese, "1, 2" in English: the seed's own way of naming slots.
    return _(", ").join(str(slot) for slot in slots)


def _page(request: HttpRequest, template: str, registrant: Registrant, **context: Any) -> HttpResponse:
    context.update(
        registrant=registrant, school=registrant.school, municipality=registrant.school.municipality
    )
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
def first_login(request: HttpRequest) -> HttpResponse:
    form = FirstLoginForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        login_id, code = form.cleaned_data["username"], form.cleaned_data["code"]
        password = form.cleaned_data["new_password1"]
        credentials = {"username": login_id}
        # The code guards the account like a password, so it shares the login's lockout (per
        # login ID and client) and the per-client throttle across login IDs.
        if throttle.client_throttled(request):
            throttle.mark_throttled(request)
            user_login_failed.send(sender=__name__, credentials=credentials, request=request)
            return get_lockout_response(request, None, credentials)
        if not AxesProxyHandler.is_allowed(request, credentials):
            return get_lockout_response(request, None, credentials)
        registrant = find_first_login(login_id, code)
        if registrant is None:
            # Counted by django-axes like a wrong password; on the last allowed try its
            # middleware replaces this response with the lockout page.
            user_login_failed.send(sender=__name__, credentials=credentials, request=request)
            form.add_error(
                None,
                _(
                    "The login ID or registration code is not correct, or the code has already been "
                    "used. Please check the letter from the school. If you have already set a "
                    "password, please log in with it."
                ),
            )
        else:
            try:
                validate_password(password, registrant.account)
            except ValidationError as error:
                form.add_error("new_password1", error)
            else:
                account = complete_first_login(registrant, code, password)
                if account is not None:
                    unlock(account.get_username())  # the letter's holder is the owner
                    login(request, account, backend="django.contrib.auth.backends.ModelBackend")
                    messages.success(
                        request, _("Your password is set. Next, please register your mail addresses.")
                    )
                    return redirect("portal:addresses")
                form.add_error(None, _("This registration code has already been used. Please log in."))
    return render(request, "portal/first_login.html", {"form": form})


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """パスワードを忘れた方: the same answer whether or not the login ID and address matched."""
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not throttle.reset_request_allowed(request):
            return render(request, "portal/password_reset_throttled.html", status=429)
        recovery.request_password_reset(form.cleaned_data["username"], form.cleaned_data["email"])
        return redirect("portal:password_reset_sent")
    return render(request, "portal/password_reset.html", {"form": form})


def password_reset_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/password_reset_sent.html")


@require_http_methods(["GET", "POST"])
def password_reset_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The mailed link: GET shows the form (mail scanners open links), POST sets the password."""
    registrant = recovery.find_guardian_reset(token)
    if registrant is None:
        return render(request, "portal/password_reset_invalid.html", status=404)
    form = GuardianSetPasswordForm(registrant.account, request.POST or None)
    if request.method == "POST" and form.is_valid():
        if recovery.complete_guardian_reset(token, form.cleaned_data["new_password1"]) is None:
            return render(request, "portal/password_reset_invalid.html", status=404)
        if request.user.is_authenticated:
            logout(request)
        messages.success(request, _("Your new password is set. Please log in with it."))
        return redirect("portal:login")
    return render(request, "portal/password_reset_confirm.html", {"form": form})


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, _("You have logged out."))
    return redirect("portal:login")


@guardian_required
def home(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    return _page(request, "portal/home.html", registrant, no_broadcast_slot=no_broadcast_address(registrant))


@guardian_required
@require_http_methods(["GET", "POST"])
def addresses(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    current = registrant.addresses_by_slot()
    if request.method == "POST":
        form = AddressForm(request.POST)
        if form.is_valid():
            try:
                changes = set_addresses(registrant, form.values())
            except ValidationError as error:
                form.add_error(None, error)
            else:
                if changes:
                    audit.record(
                        "registrant.addresses_changed",
                        actor=request.user,
                        target=registrant_target(registrant),
                        municipality=registrant.school.municipality,
                        request=request,
                        slots=[c.slot for c in changes],
                    )
                # Saved, but with no broadcast slot filled the answer is not a green "done" (FAQ ⑥):
                # the page it returns to says why in its warning box.
                level = messages.WARNING if no_broadcast_address(registrant) else messages.SUCCESS
                _report_changes(
                    request, [c.slot for c in changes if c.email], [c.slot for c in changes], level
                )
                return redirect("portal:addresses")
    else:
        form = AddressForm(initial={f"address{slot}": email for slot, email in current.items()})
    broadcast_slots = sorted(registrant.school.municipality.broadcast_slots)
    return _page(
        request,
        "portal/addresses.html",
        registrant,
        form=form,
        broadcast_slots=_slot_list(broadcast_slots),
        other_slots=_slot_list([s for s in SLOTS if s not in broadcast_slots]),
        failing=registrant.addresses.exclude(status=AddressStatus.OK).order_by("slot"),
        no_broadcast_slot=no_broadcast_address(registrant),
    )


def no_broadcast_address(registrant: Registrant) -> str:
    """FAQ ⑥: the warning when none of the municipality's broadcast slots (1 and 2 in the seed)
    holds an address, so no broadcast will arrive however many slots 3 and 4 hold; "" otherwise."""
    broadcast_slots = sorted(registrant.school.municipality.broadcast_slots)
    if registrant.addresses.filter(slot__in=broadcast_slots).exists():
        return ""
    other_slots = [s for s in SLOTS if s not in broadcast_slots]
    sentences = [
        _(
            "No mail address is registered in address %(slots)s, so broadcast mail (such as "
            "suspicious person information) will not arrive."
        )
        % {"slots": _slot_list(broadcast_slots)}
    ]
    if other_slots:
        sentences.append(
            _("Broadcast mail is not sent to addresses registered in address %(slots)s.")
            % {"slots": _slot_list(other_slots)}
        )
    sentences.append(
        _("Please register a mail address in address %(slots)s.") % {"slots": _or_list(broadcast_slots)}
    )
    return _sentences(*sentences)


def _sentences(*sentences: str) -> str:
    # One space between English sentences, none between Japanese ones.
    joined = sentences[0]
    for sentence in sentences[1:]:
        joined = _("%(first)s %(second)s") % {"first": joined, "second": sentence}
    return joined


def _or_list(slots: list[int]) -> str:
    # "1または2" in Japanese, "1 or 2" in English.
    if len(slots) == 1:
        return str(slots[0])
    return _("%(first)s or %(last)s") % {"first": _slot_list(slots[:-1]), "last": slots[-1]}


def _report_changes(request: HttpRequest, mailed: list[int], changed: list[int], level: int) -> None:
    if mailed:
        said = _(
            "Saved. A registration complete mail has been sent to address %(slots)s. "
            "If it does not arrive within a few minutes, please check the address and your "
            "phone's mail filter settings."
        ) % {"slots": _slot_list(mailed)}
    elif changed:
        said = _("Saved. Address %(slots)s was cleared.") % {"slots": _slot_list(changed)}
    else:
        said = _("Nothing was changed.")
        level = messages.INFO if level == messages.SUCCESS else level
    if level == messages.WARNING:
        said = _sentences(said, _("However, broadcast mail will not arrive: please read the warning below."))
    messages.add_message(request, level, said)


@guardian_required
@require_http_methods(["GET", "POST"])
def options(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    # The gate mails' slots (B6) are offered where the school has a gate reader.
    gate_addresses = registrant.addresses_by_slot() if gate_preferences.has_readers(registrant) else None
    if request.method == "POST":
        form = OptionsForm(request.POST, gate_addresses=gate_addresses)
        if form.is_valid():
            changed = registrant.receive_broadcasts != form.cleaned_data["receive_broadcasts"]
            registrant.receive_broadcasts = form.cleaned_data["receive_broadcasts"]
            registrant.save(update_fields=["receive_broadcasts", "updated_at"])
            if changed:
                audit.record(
                    "registrant.option_changed",
                    actor=request.user,
                    target=registrant_target(registrant),
                    municipality=registrant.school.municipality,
                    request=request,
                    receive_broadcasts=registrant.receive_broadcasts,
                )
            if registrant.receive_broadcasts:
                messages.success(request, _("Saved. You will receive broadcast mail."))
            else:
                messages.success(request, _("Saved. You will not receive broadcast mail."))
            if gate_addresses is not None:
                chosen = form.cleaned_data["gate_slots"]
                gate_preferences.choose_slots(registrant, chosen, by=registrant.account, request=request)
                if not chosen:
                    messages.warning(
                        request, _("No arrival or departure mail will be sent: no address is ticked.")
                    )
            return redirect("portal:options")
    else:
        initial: dict[str, Any] = {"receive_broadcasts": registrant.receive_broadcasts}
        if gate_addresses is not None:
            initial["gate_slots"] = gate_preferences.gate_slots(registrant)
        form = OptionsForm(initial=initial, gate_addresses=gate_addresses)
    return _page(request, "portal/options.html", registrant, form=form)

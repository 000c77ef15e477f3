"""The staff console: what a staff member's scope holds, read-only for now.

Every view is wrapped in staff_required and fetches objects through the apps' access rules only,
so a page can never show more than the user's role reaches.
"""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mimamori.accounts.models import Role, User
from mimamori.accounts.recovery import is_locked
from mimamori.console.decorators import View, staff_required
from mimamori.console.forms import RegistrantFilterForm, SchoolSearchForm, StaffAuthenticationForm
from mimamori.mail.devmailbox import StoredMail, find_mail, list_mail
from mimamori.mail.models import OutgoingMail
from mimamori.quakes import alerts as quake_alerts
from mimamori.quakes import notices as quake_notices
from mimamori.quakes.models import AlertStatus
from mimamori.registry import reachtests
from mimamori.registry.access import get_registrant, get_school, registrants_for, schools_for
from mimamori.registry.models import Address, AddressStatus, Registrant, RegistrantStatus
from mimamori.support import mails as support_mails

PAGE_SIZE = 50

# A Maildir key is "<seconds>.<unique part>.<host>", e.g. 1732850000.M123P456Q1.host. Keys
# come from the URL, so anything else (slashes, "..", escapes) is refused before any lookup.
MAILDIR_KEY = re.compile(r"[0-9]{1,20}\.[A-Za-z0-9_]{1,64}\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")

login = auth_views.LoginView.as_view(
    template_name="console/login.html",
    authentication_form=StaffAuthenticationForm,
    next_page=reverse_lazy("console:home"),
)
logout = staff_required(cast(View, auth_views.LogoutView.as_view(next_page=reverse_lazy("console:login"))))


def _staff(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # staff_required let only a signed-in staff user through
    return user


def _page(request: HttpRequest, items: QuerySet[Any]) -> Page:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context["devmail_enabled"] = settings.DEVMAIL_ENABLED
    return render(request, f"console/{template}", context, status=status)


def scope_label(user: User) -> str:
    if user.role == Role.MUNICIPALITY and user.municipality:
        return _("Municipality: %(name)s") % {"name": user.municipality.name}
    if user.role == Role.SCHOOL and user.school:
        school = user.school
        return _("School: %(municipality)s %(name)s") % {
            "municipality": school.municipality.name,
            "name": school.name,
        }
    return _("Support centre")


@staff_required
def home(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    return _render(
        request,
        "home.html",
        {
            "scope": scope_label(user),
            "school_count": schools_for(user).count(),
            "registrant_count": registrants_for(user).filter(status=RegistrantStatus.ACTIVE).count(),
            # Earthquake alerts waiting out their hold: staff may still cancel them (B10).
            "held_quake_alerts": list(quake_alerts.alerts_for(user).filter(status=AlertStatus.HELD)[:10]),
        },
    )


@staff_required
def schools(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    form = SchoolSearchForm(request.GET)
    found = schools_for(user).annotate(
        registrant_count=Count("registrants", filter=Q(registrants__status=RegistrantStatus.ACTIVE))
    )
    if form.is_valid() and form.cleaned_data["q"]:
        found = found.filter(name__icontains=form.cleaned_data["q"].strip())
    # Meta.ordering does not apply to aggregating queries; paging needs a stable order.
    found = found.order_by("municipality__code", "name", "pk")
    return _render(request, "schools.html", {"form": form, "page": _page(request, found)})


@staff_required
def school(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_school(user, school_id)
    by_grade = (
        registrants_for(user)
        .filter(school=found, status=RegistrantStatus.ACTIVE)
        .order_by("grade")
        .values("grade")
        .annotate(count=Count("pk"))
    )
    tests = reachtests.last_tests(found)
    counts = reachtests.counts(tests)
    return _render(
        request,
        "school.html",
        {
            "school": found,
            "by_grade": list(by_grade),
            "reach_tests": [{"test": test, "counts": counts[test.pk]} for test in tests],
        },
    )


def _search(registrants: QuerySet[Registrant], text: str) -> QuerySet[Registrant]:
    text = text.strip()
    # Exists rather than a join on addresses: a join would repeat a child once per match.
    address_matches = Address.objects.filter(registrant=OuterRef("pk"), email__icontains=text)
    return registrants.filter(
        Q(child_name__icontains=text)
        | Q(child_name_kana__icontains=text)
        | Q(account__username__icontains=text)
        | Q(tag_id=text)
        | Exists(address_matches)
    )


@staff_required
def registrants(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    form = RegistrantFilterForm(request.GET, schools=schools_for(user))
    found = registrants_for(user)
    filters = form.applicable()
    if "q" in filters:
        found = _search(found, filters["q"])
    if "school" in filters:
        found = found.filter(school=filters["school"])
    if "grade" in filters:
        found = found.filter(grade=filters["grade"])
    if "class_name" in filters:
        found = found.filter(class_name=filters["class_name"].strip())
    if "status" in filters:
        found = found.filter(status=filters["status"])
    found = found.annotate(address_count=Count("addresses")).order_by(
        "school__municipality__code", "school__name", "grade", "class_name", "child_name_kana", "pk"
    )
    return _render(request, "registrants.html", {"form": form, "page": _page(request, found)})


@staff_required
def registrant(request: HttpRequest, registrant_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_registrant(user, registrant_id)
    addresses = {a.slot: a for a in found.addresses.all()}
    broadcast_slots = found.school.municipality.broadcast_slots
    slots = [
        {
            "number": number,
            "email": addresses[number].email if number in addresses else "",
            "health": addresses[number].get_status_display() if number in addresses else "",
            "delivers": number not in addresses or addresses[number].status != AddressStatus.SUPPRESSED,
            # The municipality picks the slots; the guardian's option can turn them all off.
            "receives_broadcasts": found.receive_broadcasts and number in broadcast_slots,
        }
        for number in (1, 2, 3, 4)
    ]
    # Setting addresses does not touch the registrant row, so the newest of both counts.
    last_updated = max([found.updated_at, *(a.updated_at for a in addresses.values())])
    return _render(
        request,
        "registrant.html",
        {
            "registrant": found,
            "slots": slots,
            "last_updated": last_updated,
            "mails": outgoing_mails(f"registrant {found.pk}"),
            "locked": is_locked(found.account.username),
            "has_password": found.account.has_usable_password(),
        },
    )


# The mails of the outbox (mail/outbox.py) by the kind their app gives them.
MAIL_KINDS = {
    "registration_complete": gettext_lazy("Registration complete mail"),
    "address_suppressed": gettext_lazy("Notice that an address does not receive mail"),
    "inquiry_copy": gettext_lazy("Copy to the support address"),
    "inquiry_answer": gettext_lazy("Answer to the guardian"),
    "inquiry_acknowledgement": gettext_lazy("Acknowledgement to the guardian (reference number)"),
    "reach_test": gettext_lazy("Reach test mail"),
    "password_reset": gettext_lazy("Password reset mail"),
}


def outgoing_mails(target: str) -> list[dict[str, object]]:
    """The last mails sent about ``target`` ("registrant 12", "inquiry 3") and what the relay
    said of each, newest first, for console/_outgoing_mails.html."""
    mails = OutgoingMail.objects.filter(target=target).only(
        "kind", "to", "status", "reply", "created_at", "sent_at"
    )[:20]
    return [{"mail": mail, "kind": MAIL_KINDS.get(mail.kind, mail.kind)} for mail in mails]


def _visible_mail(user: User, mails: list[StoredMail]) -> list[StoredMail]:
    """Centre staff read every mail; others only mail sent from their schools' addresses, and
    municipality staff also their support desk's and their earthquake notices."""
    if user.role == Role.CENTRE:
        return mails
    senders = {school.sender_address.lower() for school in schools_for(user)}
    if user.role == Role.MUNICIPALITY and user.municipality is not None:
        # The city's support desk writes from its own address (support/mails.py).
        senders.add(support_mails.desk_address(user.municipality).lower())
        # And the earthquake notices to its staff (quakes/notices.py).
        senders.add(f"{quake_notices.SENDER_LOCAL_PART}@{user.municipality.mail_domain}".lower())
    return [mail for mail in mails if parseaddr(mail.sender)[1].lower() in senders]


def _devmail_dir() -> Path:
    if not settings.DEVMAIL_ENABLED:
        raise Http404
    return Path(settings.DEVMAIL_DIR)


@staff_required
def mailbox(request: HttpRequest) -> HttpResponse:
    mails = _visible_mail(_staff(request), list_mail(_devmail_dir()))
    return _render(request, "mailbox.html", {"mails": mails})


@staff_required
def mailbox_message(request: HttpRequest, key: str) -> HttpResponse:
    directory = _devmail_dir()
    if not MAILDIR_KEY.fullmatch(key):
        raise Http404
    mail = find_mail(directory, key)
    if mail is None or not _visible_mail(_staff(request), [mail]):
        raise Http404
    return _render(request, "mailbox_message.html", {"mail": mail})

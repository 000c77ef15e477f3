"""Console: the audit log (P9), read-only, searchable by action, who, target and date.

Centre staff read every event, municipality staff their own municipality's (through
accounts.audit_events_for); school staff get a 404, as for any page outside their
scope. GET only: nothing here, or anywhere, changes or removes an event.

The log stores codes ("registrant.option_changed"), short targets ("registrant 323 (10000001)")
and JSON details, because it outlives the objects and the personal data it names. This page
turns them into words for a person at the time of reading: the action's label, the target's
current name (a child's name and a link only when the child is in the reader's scope), and
the details as a sentence. Everything in the reader's language.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from mimamori import text
from mimamori.accounts.access import audit_events_for, can_read_audit_log, staff_for
from mimamori.accounts.models import Role, User
from mimamori.audit.labels import action_label
from mimamori.audit.models import AuditEvent
from mimamori.audit.search import search
from mimamori.broadcasts.access import broadcasts_for
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.mail.models import CarrierProfile
from mimamori.maintenance import windows
from mimamori.maintenance.models import MaintenanceWindow
from mimamori.registry.access import (
    can_manage_municipalities,
    municipalities_for,
    reach_tests_for,
    registrants_for,
    schools_for,
)
from mimamori.registry.models import DeregistrationReason, DeregistrationSource, Municipality
from mimamori.support.access import inquiries_for

PAGE_SIZE = 100


class AuditSearchForm(forms.Form):
    action = forms.ChoiceField(label=gettext_lazy("Action"), required=False)
    actor = forms.CharField(
        label=gettext_lazy("Who"), required=False, max_length=150, validators=[text.single_line]
    )
    target = forms.CharField(
        label=gettext_lazy("Target"), required=False, max_length=200, validators=[text.single_line]
    )
    date_from = forms.DateField(
        label=gettext_lazy("From (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=gettext_lazy("To (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["action"]
        assert isinstance(field, forms.ChoiceField)
        named = sorted(((a, action_label(a)) for a in actions), key=lambda choice: choice[1])
        field.choices = [("", _("All")), *named]

    def applicable(self) -> dict[str, Any]:
        """The filters that passed validation, without the empty ones."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


# --- targets as names ----------------------------------------------------------------------

# "registrant 323 (10000001)", "broadcast 12", "user iwamizawa", "municipality 01210"
TARGET = re.compile(r"^(?P<kind>[a-z_]+) (?P<key>\S+)(?: \((?P<extra>[^)]*)\))?$")


@dataclass(frozen=True)
class Named:
    text: str
    url: str = ""


def _when(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "Y-m-d H:i")


def _iso(value: object) -> str:
    try:
        return _when(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


class Names:
    """The current names of the objects a page of events mentions, looked up in a few queries,
    each through the reader's scope: what the reader may not open is named by its bare id."""

    def __init__(self, reader: User, events: Iterable[AuditEvent]) -> None:
        self.reader = reader
        keys: dict[str, set[str]] = defaultdict(set)
        school_ids: set[int] = set()
        for event in events:
            if match := TARGET.match(event.target):
                keys[match["kind"]].add(match["key"])
            for field in ("school", "destination_school"):
                if isinstance(event.details.get(field), int):
                    school_ids.add(event.details[field])
        school_ids |= {int(k) for k in keys["school"] if k.isdigit()}
        self.registrants = self._by_id(registrants_for(reader), keys["registrant"])
        self.broadcasts = self._by_id(broadcasts_for(reader), keys["broadcast"])
        self.schools = self._by_id(schools_for(reader), {str(i) for i in school_ids})
        self.inquiries = self._by_id(inquiries_for(reader), keys["inquiry"])
        self.reach_tests = self._by_id(reach_tests_for(reader), keys["reachtest"])
        self.maintenance = self._by_id(MaintenanceWindow.objects.all(), keys["maintenance"])
        self.municipalities = {m.code: m for m in Municipality.objects.all()}
        self.readable_municipalities = set(municipalities_for(reader).values_list("code", flat=True))
        self.carriers = {c.name: c for c in CarrierProfile.objects.filter(name__in=keys["carrier"])}
        users = User.objects.filter(username__in=keys["user"]).select_related("municipality", "school")
        self.users = {u.username: u for u in users}
        self.manageable_staff = set(
            staff_for(reader).filter(username__in=keys["user"]).values_list("pk", flat=True)
        )
        guardians = registrants_for(reader).filter(account__username__in=keys["user"])
        self.guardians = {r.account.username: r for r in guardians}

    @staticmethod
    def _by_id(objects: Any, keys: set[str]) -> dict[int, Any]:
        ids = [int(k) for k in keys if k.isdigit()]
        return {o.pk: o for o in objects.filter(pk__in=ids)} if ids else {}

    def school(self, school_id: object) -> str:
        school = self.schools.get(school_id) if isinstance(school_id, int) else None
        return school.name if school is not None else _("school %(id)s") % {"id": school_id}

    def municipality_names(self, codes: object) -> str:
        if not codes:
            return _("every municipality")
        names = [self.municipalities[c].name if c in self.municipalities else str(c) for c in codes]  # type: ignore[attr-defined]
        return _(", ").join(names)

    def target(self, event: AuditEvent) -> Named:
        match = TARGET.match(event.target)
        if match is None:
            return Named(event.target)
        kind, key, extra = match["kind"], match["key"], match["extra"] or ""
        number = int(key) if key.isdigit() else -1
        if kind == "registrant":
            if (registrant := self.registrants.get(number)) is not None:
                return self._child(registrant)
            return Named(_("Registrant (login ID %(login)s)") % {"login": extra or key})
        if kind == "broadcast":
            if (broadcast := self.broadcasts.get(number)) is not None:
                label = broadcast.subject or _("Broadcast %(id)s") % {"id": key}
                return Named(label, reverse("console:broadcast", args=[broadcast.pk]))
            return Named(_("Broadcast %(id)s") % {"id": key})
        if kind == "user":
            return self._user(key)
        if kind == "school":
            if (school := self.schools.get(number)) is not None:
                return Named(school.name, reverse("console:school", args=[school.pk]))
            return Named(_("School %(id)s") % {"id": key})
        if kind == "municipality":
            if (city := self.municipalities.get(key)) is not None and key in self.readable_municipalities:
                url = ""
                if can_manage_municipalities(self.reader):
                    url = reverse("console:municipality_settings", args=[key])
                return Named(city.name, url)
            return Named(_("Municipality %(code)s") % {"code": key})
        if kind == "inquiry":
            if (inquiry := self.inquiries.get(number)) is not None:
                label = _("Inquiry %(reference)s “%(subject)s”") % {
                    "reference": inquiry.reference,
                    "subject": inquiry.subject,
                }
                return Named(label, reverse("console:inquiry", args=[inquiry.pk]))
            return Named(_("Inquiry %(id)s") % {"id": key})
        if kind == "reachtest":
            if (test := self.reach_tests.get(number)) is not None:
                label = _("Reach test at %(school)s, %(when)s") % {
                    "school": test.school.name,
                    "when": _when(test.started_at),
                }
                return Named(label, reverse("console:reach_test", args=[test.pk]))
            return Named(_("Reach test %(id)s") % {"id": key})
        if kind == "maintenance":
            if (window := self.maintenance.get(number)) is not None:
                label = _("Maintenance from %(start)s") % {"start": _when(window.starts_at)}
                url = (
                    reverse("console:maintenance_edit", args=[window.pk])
                    if windows.can_plan(self.reader)
                    else ""
                )
                return Named(label, url)
            return Named(_("Maintenance %(id)s") % {"id": key})
        if kind == "carrier":
            if (carrier := self.carriers.get(key)) is not None:
                url = (
                    reverse("console:carrier_profile", args=[key]) if self.reader.role == Role.CENTRE else ""
                )
                return Named(_("Carrier profile %(name)s") % {"name": carrier.name}, url)
            return Named(_("Carrier profile %(name)s") % {"name": key})
        return Named(event.target)

    def _child(self, registrant: Any) -> Named:
        label = _("%(child)s (%(school)s)") % {
            "child": registrant.child_name,
            "school": registrant.school.name,
        }
        return Named(label, reverse("console:registrant", args=[registrant.pk]))

    def _user(self, username: str) -> Named:
        if (guardian := self.guardians.get(username)) is not None:
            return Named(
                _("Guardian of %(child)s") % {"child": self._child(guardian).text},
                reverse("console:registrant", args=[guardian.pk]),
            )
        user = self.users.get(username)
        if user is None or not user.is_console_user:
            return Named(_("Login ID %(name)s") % {"name": username})
        return Named(
            person(user),
            reverse("console:staff") if user.pk in self.manageable_staff else "",
        )


def person(user: User) -> str:
    """A staff member as a person: their name and login, or the login alone."""
    # Family name first, as Japanese names are written.
    full = " ".join(part for part in (user.last_name.strip(), user.first_name.strip()) if part)
    return _("%(name)s (%(login)s)") % {"name": full, "login": user.username} if full else user.username


# --- details as a sentence -------------------------------------------------------------------


def _on_off(value: object) -> str:
    return _("on") if value else _("off")


def _changes(changes: object, model: type[Model]) -> str:
    if not isinstance(changes, dict):
        return ""
    parts = []
    for field, values in changes.items():
        try:
            name = str(getattr(model._meta.get_field(field), "verbose_name", field))
        except Exception:  # a field renamed or removed since the event
            name = field
        old, new = values if isinstance(values, list) and len(values) == 2 else ("", values)
        parts.append(
            _("%(field)s from %(old)s to %(new)s") % {"field": name, "old": _value(old), "new": _value(new)}
        )
    return _("Changed: %(changes)s.") % {"changes": _("; ").join(parts)}


def _value(value: object) -> str:
    if isinstance(value, bool):
        return _on_off(value)
    if isinstance(value, list):
        return _(", ").join(str(v) for v in value) or _("none")
    if value in (None, ""):
        return _("none")
    return str(value)


def _choice(choices: Any, value: object) -> str:
    try:
        return str(choices(value).label)
    except ValueError:
        return str(value)


def _site(d: dict[str, Any], n: Names) -> str:
    return {
        "console": _("On the staff console."),
        "portal": _("On the guardian site."),
        "admin": _("On the administration site."),
    }.get(d.get("site", ""), "")


def _window(d: dict[str, Any], n: Names) -> str:
    return _("From %(start)s to %(end)s, for %(cities)s.") % {
        "start": _iso(d.get("starts_at")),
        "end": _iso(d.get("ends_at")),
        "cities": n.municipality_names(d.get("municipalities")),
    }


def _moved(d: dict[str, Any], n: Names) -> str:
    before = d.get("before") or {}
    return _("Now: %(after)s Before: %(before)s") % {"after": _window(d, n), "before": _window(before, n)}


def _deregistration(d: dict[str, Any], n: Names) -> str:
    sentence = _("Reason: %(reason)s (%(source)s).") % {
        "reason": _choice(DeregistrationReason, d.get("reason")),
        "source": _choice(DeregistrationSource, d.get("source")),
    }
    if d.get("destination_school"):
        sentence += " " + _("Moving to %(school)s.") % {"school": n.school(d["destination_school"])}
    return sentence


def _option(d: dict[str, Any], n: Names) -> str:
    sentence = _("Broadcast mail turned %(state)s.") % {"state": _on_off(d.get("receive_broadcasts"))}
    if d.get("via"):
        sentence += " " + _("By the unsubscribe button in a mail (broadcast %(id)s).") % {
            "id": d.get("broadcast")
        }
    return sentence


def _reminder(d: dict[str, Any], n: Names) -> str:
    sentence = _("Reminder %(number)s to %(count)s addresses.") % {
        "number": d.get("reminder"),
        "count": d.get("messages"),
    }
    return sentence + " " + (_("Sent automatically.") if d.get("automatic") else _("Sent by hand."))


def _password_reset(d: dict[str, Any], n: Names) -> str:
    if d.get("matched"):
        return _("A reset mail was sent to address %(slot)s.") % {"slot": d.get("slot")}
    return _("The address given is not registered; no mail was sent.")


def _letters(d: dict[str, Any], n: Names) -> str:
    sentence = _("Letters for %(count)s registrants.") % {"count": len(d.get("registrants") or [])}
    if d.get("reissued_after_login"):
        sentence += " " + _("%(count)s of them had already logged in; their passwords were replaced.") % {
            "count": len(d["reissued_after_login"])
        }
    return sentence


def _dkim(d: dict[str, Any], n: Names) -> str:
    sentence = _("Selector %(selector)s for %(domain)s.") % {
        "selector": d.get("selector"),
        "domain": d.get("domain"),
    }
    if d.get("replaced"):
        sentence += " " + _("Replaces selector %(selector)s.") % {"selector": d["replaced"]}
    return sentence


def _emblem(d: dict[str, Any], n: Names) -> str:
    if d.get("change") == "removed":
        return _("The emblem was removed.")
    size = {"width": d.get("width"), "height": d.get("height")}
    if d.get("change") == "replaced":
        return _("A new emblem replaced the old one (%(width)s×%(height)s pixels).") % size
    return _("An emblem was uploaded (%(width)s×%(height)s pixels).") % size


SENTENCES: dict[str, Callable[[dict[str, Any], Names], str]] = {
    "login.succeeded": _site,
    "login.failed": _site,
    "login.locked_out": _site,
    "login.unlocked": lambda d, n: _("%(count)s lock records cleared.") % {"count": d.get("cleared", 0)},
    "password_reset.requested": _password_reset,
    "staff.created": lambda d, n: _("Role: %(role)s.") % {"role": _choice(Role, d.get("role"))},
    "api_token.issued": lambda d, n: _("Token beginning %(prefix)s.") % {"prefix": d.get("token")},
    "broadcast.sent": lambda d, n: (
        (_("Subject “%(subject)s”, urgent.") if d.get("urgent") else _("Subject “%(subject)s”."))
        % {"subject": d.get("subject", "")}
    ),
    "broadcast.retried": lambda d, n: _("%(count)s mails sent again.") % {"count": d.get("messages")},
    "reminder.sent": _reminder,
    "registrant.created": lambda d, n: _("At %(school)s.") % {"school": n.school(d.get("school"))},
    "registrant.imported": lambda d, n: _("%(count)s registrants added.") % {"count": d.get("count")},
    "registrant.addresses_changed": lambda d, n: (
        _("Address %(slots)s changed.") % {"slots": _(", ").join(str(s) for s in d.get("slots") or [])}
    ),
    "registrant.option_changed": _option,
    "registrant.tag_changed": lambda d, n: (
        _("IC tag %(old)s → %(new)s.") % {"old": d.get("old") or "—", "new": d.get("new") or "—"}
    ),
    "registrant.tag_reassigned": lambda d, n: (
        _("IC tag %(tag)s taken from %(from)s.") % {"tag": d.get("tag"), "from": d.get("from")}
    ),
    "registrant.deregistered": _deregistration,
    "deregistration.requested": _deregistration,
    "registrant.transferred_in": lambda d, n: (
        _("The addresses were carried over from the previous school.")
        if d.get("addresses_copied")
        else _("No addresses were carried over.")
    ),
    "export.registration_letters": _letters,
    "export.undeliverable_csv": lambda d, n: (
        _("The addresses of reach test %(id)s.") % {"id": d["reach_test"]} if d.get("reach_test") else ""
    ),
    "reach_test.started": lambda d, n: (
        (_("At %(school)s, as scheduled.") if d.get("scheduled") else _("At %(school)s, started by hand."))
        % {"school": n.school(d.get("school"))}
    ),
    "municipality.settings_changed": lambda d, n: _changes(d.get("changes"), Municipality),
    "municipality.emblem_changed": _emblem,
    "carrier.changed": lambda d, n: _changes(d.get("changes"), CarrierProfile),
    "dkim.key_created": _dkim,
    "maintenance.planned": _window,
    "maintenance.changed": _moved,
    "maintenance.moved": _moved,
}


def _generic(details: dict[str, Any]) -> str:
    """Details of an action without its own sentence: each key and value, in one line."""
    return _("; ").join(f"{key}: {_value(value)}" for key, value in sorted(details.items()))


def details_sentence(event: AuditEvent, names: Names) -> str:
    details = event.details if isinstance(event.details, dict) else {}
    sentence = SENTENCES.get(event.action)
    if sentence is None:
        return _generic(details) if details else ""
    try:
        return sentence(details, names)
    except (KeyError, TypeError, ValueError, AttributeError):  # an event written in an older shape
        return _generic(details)


def _row(event: AuditEvent, names: Names) -> dict[str, Any]:
    actor = event.actor
    who = person(actor) if actor is not None and actor.is_console_user else event.actor_name
    return {
        "event": event,
        "who": who,
        "action": action_label(event.action),
        "target": names.target(event),
        "details": details_sentence(event, names),
    }


@staff_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    if not can_read_audit_log(user):
        raise Http404
    events = audit_events_for(user)
    actions = sorted(set(events.order_by().values_list("action", flat=True).distinct()))
    form = AuditSearchForm(request.GET, actions=actions)
    found = search(events, form.applicable()).select_related("municipality", "actor").order_by("-at", "-pk")
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    page_events = list(page)
    names = Names(user, page_events)
    rows = [_row(event, names) for event in page_events]
    return _render(request, "audit.html", {"form": form, "page": page, "rows": rows})

"""Console: the audit log (P9), read-only, searchable by action, who, target and date.

Centre staff read every event, municipality staff their own municipality's (through
accounts.audit_events_for); school staff get a 404, as for any page outside their
scope. GET only: nothing here, or anywhere, changes or removes an event.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from mimamori import text
from mimamori.accounts.access import audit_events_for, can_read_audit_log
from mimamori.audit.models import AuditEvent
from mimamori.audit.search import search
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff

PAGE_SIZE = 100

# Names for the actions staff meet most; any other action is shown as recorded.
ACTION_LABELS = {
    "login.succeeded": _("Login"),
    "login.failed": _("Login failed"),
    "login.locked_out": _("Login locked"),
    "broadcast.sent": _("Broadcast sent"),
    "broadcast.retried": _("Broadcast sent again to failed addresses"),
    "reminder.sent": _("Reminder sent"),
    "registrant.created": _("Registrant created"),
    "registrant.imported": _("Roster imported"),
    "registrant.addresses_changed": _("Addresses changed"),
    "registrant.option_changed": _("Broadcast option changed"),
    "export.unconfirmed_csv": _("Unconfirmed list downloaded (CSV)"),
    "export.registration_letters": _("Registration letters re-issued"),
    "export.undeliverable_csv": _("Addresses mail does not reach downloaded (CSV)"),
    "reach_test.started": _("Reach test started"),
    "api_token.issued": _("API token issued"),
    "staff.created": _("Staff login created"),
    "dkim.key_created": _("DKIM signing key created"),
    "carrier.changed": _("Carrier profile changed"),
    "carrier.resumed": _("Carrier pause ended by hand"),
}


class AuditSearchForm(forms.Form):
    action = forms.ChoiceField(label=_("Action"), required=False)
    actor = forms.CharField(label=_("Who"), required=False, max_length=150, validators=[text.single_line])
    target = forms.CharField(label=_("Target"), required=False, max_length=200, validators=[text.single_line])
    date_from = forms.DateField(
        label=_("From (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label=_("To (date)"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, actions: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["action"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [("", _("All")), *((a, action_label(a)) for a in actions)]

    def applicable(self) -> dict[str, Any]:
        """The filters that passed validation, without the empty ones."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}


def action_label(action: str) -> str:
    label = ACTION_LABELS.get(action)
    return f"{label} ({action})" if label else action


def _row(event: AuditEvent) -> dict[str, Any]:
    return {
        "event": event,
        "action": action_label(event.action),
        "details": json.dumps(event.details, ensure_ascii=False, sort_keys=True) if event.details else "",
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
    found = search(events, form.applicable()).select_related("municipality").order_by("-at", "-pk")
    page = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [_row(event) for event in page]
    return _render(request, "audit.html", {"form": form, "page": page, "rows": rows})

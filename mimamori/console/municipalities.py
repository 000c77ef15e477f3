"""Console pages for S12: each municipality's service settings, and the DNS records its mail
domain must publish.

Every staff member may read the settings of the municipalities in their scope; only
support-centre staff change them (others get a 404 for the edit page, as for anything out of
reach), and every change is audited with its old and new values. The DNS records (SPF, DKIM,
DMARC, checked against DNS where it answers) are for the centre and the municipality's staff.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.mail import records
from mimamori.registry import emblems
from mimamori.registry.access import (
    can_change_emblem,
    can_manage_municipalities,
    can_see_mail_domain_records,
    get_municipality,
    municipalities_for,
)
from mimamori.registry.models import SLOTS, Municipality
from mimamori.registry.municipalities import change_settings


class MunicipalitySettingsForm(forms.ModelForm):
    broadcast_slots = forms.TypedMultipleChoiceField(
        label=gettext_lazy("Address slots that receive broadcasts"),
        choices=[(slot, str(slot)) for slot in SLOTS],
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
    )

    class Meta:
        model = Municipality
        fields = [
            "mail_domain",
            "support_name",
            "support_phone",
            "support_email",
            "support_hours",
            "confirmation_links_enabled",
            "one_click_unsubscribe",
            "broadcast_slots",
            "maintenance_notice_lead_hours",
            "reach_test_interval_days",
        ]

    def clean_broadcast_slots(self) -> list[int]:
        slots = sorted(set(self.cleaned_data["broadcast_slots"]))
        if not slots:
            raise ValidationError(_("Choose at least one slot."))
        return slots


@staff_required
def municipalities(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    return _render(
        request,
        "municipalities.html",
        {
            "municipalities": municipalities_for(user),
            "can_edit": can_manage_municipalities(user),
            "can_see_records": can_see_mail_domain_records(user),
            "can_change_emblem": can_change_emblem(user),
        },
    )


@staff_required
@require_http_methods(["GET", "POST"])
def municipality_settings(request: HttpRequest, code: str) -> HttpResponse:
    user = _staff(request)
    municipality = get_municipality(user, code)
    if not can_manage_municipalities(user):
        raise Http404
    # The form edits a copy: on a failed save the page must not show half-applied values.
    form = MunicipalitySettingsForm(
        request.POST or None, instance=Municipality.objects.get(pk=municipality.pk)
    )
    if request.method == "POST":
        if form.is_valid():
            changes = change_settings(municipality, form.cleaned_data, by=user, request=request)
            if changes:
                messages.success(request, _("Saved. The change has been recorded in the audit log."))
            else:
                messages.info(request, _("Nothing was changed."))
            return redirect("console:municipalities")
        return _render(
            request, "municipality_settings.html", {"municipality": municipality, "form": form}, 400
        )
    return _render(request, "municipality_settings.html", {"municipality": municipality, "form": form})


@staff_required
@require_GET
def municipality_dns(request: HttpRequest, code: str) -> HttpResponse:
    """The SPF, DKIM and DMARC records of the municipality's mail domain, each checked against
    what DNS says (briefly: a machine without outside DNS shows them 未確認). Public keys only."""
    user = _staff(request)
    municipality = get_municipality(user, code)
    if not can_see_mail_domain_records(user):
        raise Http404
    checks = records.check(
        records.for_domain(municipality.mail_domain), nameservers=settings.MIMAMORI_DNS_SERVERS
    )
    return _render(
        request,
        "municipality_dns.html",
        {
            "municipality": municipality,
            "checks": checks,
            "has_signing_key": any(
                c.record.key is not None and c.record.key.retired_at is None for c in checks
            ),
            "dmarc_report_address": settings.MIMAMORI_DMARC_RUA,
            "can_edit": can_manage_municipalities(user),
        },
    )


class EmblemForm(forms.Form):
    emblem = forms.FileField(
        label=gettext_lazy("Emblem image (PNG or JPEG, at most 200 KB)"),
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg"}),
    )


@staff_required
@require_http_methods(["GET", "POST"])
def municipality_emblem(request: HttpRequest, code: str) -> HttpResponse:
    """The municipality's emblem (市章): upload, replace, remove. Municipality staff (their own
    city) and the centre (any); school staff get a 404 (registry/emblems.py checks the image)."""
    user = _staff(request)
    municipality = get_municipality(user, code)
    if not can_change_emblem(user):
        raise Http404
    form = EmblemForm()
    status = 200
    if request.method == "POST":
        if "remove" in request.POST:
            if emblems.remove_emblem(municipality, by=user, request=request):
                messages.success(request, _("The emblem has been removed."))
            return redirect("console:municipality_emblem", code=municipality.code)
        form = EmblemForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["emblem"]
            try:
                if upload.size > emblems.MAX_BYTES:
                    raise emblems.EmblemRefused(_("The file is larger than 200 KB."))
                emblems.change_emblem(municipality, upload.read(), by=user, request=request)
            except emblems.EmblemRefused as refused:
                form.add_error("emblem", str(refused))
            else:
                messages.success(
                    request, _("The emblem has been saved. It is shown in the headers of both sites.")
                )
                return redirect("console:municipality_emblem", code=municipality.code)
        status = 400
    return _render(
        request,
        "municipality_emblem.html",
        {"municipality": municipality, "form": form, "can_edit": can_manage_municipalities(user)},
        status,
    )

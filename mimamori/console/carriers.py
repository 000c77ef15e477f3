"""Console pages for carrier profiles (B3, B12): how mail for each destination group is handed
to the relay, and how each group is doing.

Support-centre staff see and change them (other staff get a 404, as for anything out of reach);
every change, and every pause ended by hand, is audited.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import Role, User
from mimamori.audit.log import record
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.mail import carriers
from mimamori.mail.models import CarrierProfile

DOMAIN = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")


class CarrierProfileForm(forms.ModelForm):
    domains = forms.CharField(
        label=gettext_lazy("Domains"),
        required=False,
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy("One a line. Their subdomains belong to the group too."),
    )

    class Meta:
        model = CarrierProfile
        fields = ["label", "domains", "sessions", "mails_per_session", "rate_per_minute", "charset"]

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not self.is_bound:
            self.initial["domains"] = "\n".join(self.instance.domains)

    def clean_domains(self) -> list[str]:
        domains = sorted(
            {line.strip().lower() for line in self.cleaned_data["domains"].splitlines() if line.strip()}
        )
        bad = [domain for domain in domains if not DOMAIN.fullmatch(domain)]
        if bad:
            raise ValidationError(_("Not a domain: %(domains)s") % {"domains": ", ".join(bad)})
        if self.instance.name == carriers.DEFAULT and domains:
            raise ValidationError(_("This group takes every domain no other group lists: it lists none."))
        taken = [
            f"{domain} ({other.label})"
            for other in CarrierProfile.objects.exclude(pk=self.instance.pk)
            for domain in domains
            if domain in other.domains
        ]
        if taken:
            raise ValidationError(_("Already in another group: %(domains)s") % {"domains": ", ".join(taken)})
        return domains


def _centre(request: HttpRequest) -> User:
    user = _staff(request)
    if user.role != Role.CENTRE:
        raise Http404
    return user


@staff_required
def carrier_profiles(request: HttpRequest) -> HttpResponse:
    _centre(request)
    in_use = carriers.sessions_in_use()
    now = timezone.now()
    rows = [
        {
            "profile": profile,
            "in_use": in_use.get(profile.pk, 0),
            "paused": profile.paused_until is not None and profile.paused_until > now,
        }
        for profile in CarrierProfile.objects.all()
    ]
    return _render(request, "carriers.html", {"rows": rows})


@staff_required
@require_http_methods(["GET", "POST"])
def carrier_profile(request: HttpRequest, name: str) -> HttpResponse:
    user = _centre(request)
    profile = get_object_or_404(CarrierProfile, name=name)
    # The form edits a copy: on a failed save the page must not show half-applied values.
    form = CarrierProfileForm(request.POST or None, instance=CarrierProfile.objects.get(pk=profile.pk))
    if request.method == "POST":
        if not form.is_valid():
            return _render(request, "carrier.html", {"profile": profile, "form": form}, 400)
        changes = carriers.change(profile, form.cleaned_data)
        if changes:
            record(
                "carrier.changed",
                actor=user,
                target=f"carrier {profile.name}",
                request=request,
                changes=changes,
            )
            messages.success(request, _("Saved. The change has been recorded in the audit log."))
        else:
            messages.info(request, _("Nothing was changed."))
        return redirect("console:carrier_profiles")
    return _render(request, "carrier.html", {"profile": profile, "form": form})


@staff_required
@require_POST
def carrier_resume(request: HttpRequest, name: str) -> HttpResponse:
    user = _centre(request)
    profile = get_object_or_404(CarrierProfile, name=name)
    if carriers.resume(profile):
        record("carrier.resumed", actor=user, target=f"carrier {profile.name}", request=request)
        messages.success(request, _("Sending to %(group)s resumes now.") % {"group": profile.label})
    return redirect("console:carrier_profiles")

"""The guardian's 登録解除届 (S10): file one request, then see whether the school has decided.

Filing takes two steps: the form, then a page that shows what will be sent and what approval
means, with 「この内容で届け出る」 and 「修正する」 (the form's values ride along as hidden
fields, so it works without JavaScript and nothing is stored before the second press). A
request still waiting can be withdrawn. Approval ends the login, so a guardian sees "waiting",
"withdrawn" or "rejected" here, never "approved": that news comes by mail.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import User
from mimamori.portal.decorators import guardian_required
from mimamori.registry import deregistration
from mimamori.registry.models import DeregistrationReason, Registrant, School


class GuardianDeregistrationForm(forms.Form):
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"), choices=DeregistrationReason.choices, widget=forms.RadioSelect
    )
    effective_on = forms.DateField(
        label=gettext_lazy("Date of deregistration"),
        help_text=gettext_lazy("For a transfer, the last day at the current school."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    destination_school = forms.ModelChoiceField(
        label=gettext_lazy("New school (transfer within the city)"),
        queryset=School.objects.none(),
        required=False,
    )
    note = forms.CharField(
        label=gettext_lazy("Note (optional)"),
        max_length=500,
        required=False,
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: object, registrant: Registrant, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["destination_school"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = School.objects.filter(
            pk__in=[s.pk for s in deregistration.destination_schools(registrant)]
        ).order_by("name")
        self.registrant = registrant

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        if "reason" in cleaned and "destination_school" not in self.errors:
            try:
                cleaned["destination_school"] = deregistration.check_destination(
                    self.registrant, cleaned["reason"], cleaned.get("destination_school")
                )
            except ValidationError as error:
                self.add_error(None, error)
        return cleaned


@guardian_required
@require_http_methods(["GET", "POST"])
def deregistration_request(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    pending = deregistration.pending_request(registrant)
    latest = registrant.deregistration_requests.first()
    form = GuardianDeregistrationForm(
        request.POST or None, registrant=registrant, initial={"effective_on": timezone.localdate()}
    )
    status = 200
    if request.method == "POST" and pending is not None:
        status = 409  # one request at a time: the page shows the one that is waiting
    elif request.method == "POST" and form.is_valid() and "confirmed" not in request.POST:
        if "back" not in request.POST:
            # Step two: what will be sent, and what approval means, before anything is filed.
            context = {
                "registrant": registrant,
                "school": registrant.school,
                "municipality": registrant.school.municipality,
                "form": form,
                "reason": dict(DeregistrationReason.choices)[form.cleaned_data["reason"]],
            }
            return render(request, "portal/deregistration_confirm.html", context)
    elif request.method == "POST" and form.is_valid():
        assert isinstance(request.user, User)
        try:
            deregistration.submit_request(
                registrant,
                reason=form.cleaned_data["reason"],
                effective_on=form.cleaned_data["effective_on"],
                note=form.cleaned_data["note"],
                destination_school=form.cleaned_data["destination_school"],
                by=request.user,
                request=request,
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(
                request,
                _("Your deregistration request has been sent to the school. Please wait for approval."),
            )
            return redirect("portal:deregistration")
    context = {
        "registrant": registrant,
        "school": registrant.school,
        "municipality": registrant.school.municipality,
        "form": form,
        "pending": pending,
        "latest": latest,
    }
    return render(request, "portal/deregistration.html", context, status=status)


@guardian_required
@require_POST
def withdraw(request: HttpRequest, registrant: Registrant) -> HttpResponse:
    """取り下げ: the waiting request, if staff have not decided it meanwhile."""
    pending = deregistration.pending_request(registrant)
    assert isinstance(request.user, User)
    if pending is not None and deregistration.withdraw(pending, request.user, request=request):
        messages.success(
            request, _("Your deregistration request has been withdrawn. Your child stays registered.")
        )
    else:
        messages.info(request, _("There is no request waiting for the school's decision."))
    return redirect("portal:deregistration")

"""Console pages for 登録解除届 (S10) and 転入登録 (S11).

Requests are reached through the registrant they concern (get_registrant), so staff of
another school get a 404 for approve and reject exactly as for the registrant page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Case, IntegerField, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import User
from mimamori.console.decorators import staff_required
from mimamori.console.roster import letters_response
from mimamori.console.views import _render, _staff
from mimamori.registry import deregistration
from mimamori.registry.access import (
    deregistration_requests_for,
    get_registrant,
    get_school,
    incoming_transfers_for,
)
from mimamori.registry.models import (
    DeregistrationReason,
    DeregistrationRequest,
    DeregistrationStatus,
    Registrant,
    School,
)
from mimamori.registry.transfers import transfer_in


class DeregistrationForm(forms.Form):
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"), choices=DeregistrationReason.choices, widget=forms.RadioSelect
    )
    effective_on = forms.DateField(
        label=gettext_lazy("Date of deregistration"), widget=forms.DateInput(attrs={"type": "date"})
    )
    destination_school = forms.ModelChoiceField(
        label=gettext_lazy("New school (transfer within the city)"),
        queryset=School.objects.none(),
        required=False,
    )
    note = forms.CharField(
        label=gettext_lazy("Note"),
        max_length=500,
        required=False,
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, registrant: Registrant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["destination_school"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = School.objects.filter(
            pk__in=[s.pk for s in deregistration.destination_schools(registrant)]
        )


class IncomingTransferField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return _("%(name)s (from %(school)s, grade %(grade)d)") % {
            "name": obj.registrant.child_name,
            "school": obj.registrant.school.name,
            "grade": obj.registrant.grade,
        }


class TransferInForm(forms.Form):
    previous = IncomingTransferField(
        label=gettext_lazy("Transfer from another school in the city"),
        queryset=DeregistrationRequest.objects.none(),
        required=False,
    )
    copy_addresses = forms.BooleanField(
        label=gettext_lazy("Copy the mail addresses of the old registration"), required=False
    )
    child_name = forms.CharField(
        label=gettext_lazy("Child's name"), max_length=64, validators=[text.single_line]
    )
    child_name_kana = forms.CharField(
        label=gettext_lazy("Child's name (kana)"),
        max_length=64,
        required=False,
        validators=[text.single_line],
    )
    grade = forms.IntegerField(label=gettext_lazy("Grade"), min_value=1, max_value=9)
    class_name = forms.CharField(label=gettext_lazy("Class"), max_length=16, validators=[text.single_line])

    def __init__(self, *args: Any, incoming: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["previous"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = incoming


@staff_required
def deregistrations(request: HttpRequest) -> HttpResponse:
    pending_first = Case(
        When(status=DeregistrationStatus.PENDING, then=Value(0)),
        default=Value(1),
        output_field=IntegerField(),
    )
    found = deregistration_requests_for(_staff(request)).order_by(pending_first, "-submitted_at", "-pk")
    page = Paginator(found, 50).get_page(request.GET.get("page"))
    return _render(request, "deregistrations.html", {"page": page})


@staff_required
@require_http_methods(["GET", "POST"])
def registrant_deregistration(request: HttpRequest, registrant_id: int) -> HttpResponse:
    """The registrant's requests; approve or reject the waiting one, or enter a paper form."""
    user = _staff(request)
    registrant = get_registrant(user, registrant_id)
    pending = deregistration.pending_request(registrant)
    form = DeregistrationForm(
        request.POST or None,
        registrant=registrant,
        initial={
            "effective_on": timezone.localdate(),
            "destination_school": pending.destination_school if pending else None,
        },
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                deregistration.submit_request(
                    registrant,
                    reason=form.cleaned_data["reason"],
                    effective_on=form.cleaned_data["effective_on"],
                    note=form.cleaned_data["note"],
                    destination_school=form.cleaned_data["destination_school"],
                    by=user,
                    request=request,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, _("The paper form was entered. Please approve it to deregister."))
                return redirect("console:registrant_deregistration", registrant.pk)
        status = 400
    context = {
        "registrant": registrant,
        "pending": pending,
        "form": form,
        "history": deregistration_requests_for(user).filter(registrant=registrant),
        "transfer_within": DeregistrationReason.TRANSFER_WITHIN,
    }
    return _render(request, "registrant_deregistration.html", context, status=status)


def _pending_or_404(request: HttpRequest, registrant_id: int) -> tuple[User, DeregistrationRequest | None]:
    user = _staff(request)
    registrant = get_registrant(user, registrant_id)
    found = deregistration_requests_for(user).filter(
        registrant=registrant, status=DeregistrationStatus.PENDING
    )
    return user, found.first()


@staff_required
@require_POST
def approve(request: HttpRequest, registrant_id: int) -> HttpResponse:
    user, pending = _pending_or_404(request, registrant_id)
    if pending is None:
        messages.info(request, _("There is no request waiting for approval."))
        return redirect("console:registrant_deregistration", registrant_id)
    form = DeregistrationForm(request.POST, registrant=pending.registrant)
    form.is_valid()  # only the destination is read; the other fields belong to the request
    try:
        deregistration.approve(
            pending, user, destination_school=form.cleaned_data.get("destination_school"), request=request
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, _("Approved. The registration has been cancelled: no more mail is sent."))
    return redirect("console:registrant_deregistration", registrant_id)


@staff_required
@require_POST
def reject(request: HttpRequest, registrant_id: int) -> HttpResponse:
    user, pending = _pending_or_404(request, registrant_id)
    if pending is not None and deregistration.reject(pending, user, request=request):
        messages.success(request, _("Rejected. The child stays registered."))
    return redirect("console:registrant_deregistration", registrant_id)


@staff_required
@require_http_methods(["GET", "POST"])
def school_transfer_in(request: HttpRequest, school_id: int) -> HttpResponse:
    """転入登録: register a child who moved here; the answer is the registration letter."""
    user = _staff(request)
    school = get_school(user, school_id)
    incoming = incoming_transfers_for(user, school)
    form = TransferInForm(request.POST or None, incoming=incoming)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                enrolment = transfer_in(
                    school,
                    child_name=data["child_name"],
                    child_name_kana=data["child_name_kana"],
                    grade=data["grade"],
                    class_name=data["class_name"],
                    previous=data["previous"],
                    copy_addresses=data["copy_addresses"],
                    by=user,
                    request=request,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                return letters_response([enrolment])
        status = 400
    return _render(
        request, "transfer_in.html", {"school": school, "form": form, "incoming": incoming}, status
    )

"""Guardian site: the support desk's inquiry form (S13) and the help page (S14).

Both work logged in or not. A logged-in guardian asks their own municipality's desk and
reads help with their own school's sender address; anyone else chooses a municipality and
reads every municipality's sender domain.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from mimamori import text
from mimamori.audit.log import client_address
from mimamori.registry.access import guardian_registrant
from mimamori.registry.models import SLOTS, Municipality, Registrant
from mimamori.support.desk import Draft, InquiryRefused, submit_inquiry
from mimamori.support.models import MAX_BODY, MAX_NAME, MAX_SUBJECT


def _guardian(request: HttpRequest) -> Registrant | None:
    user = request.user
    if not (user.is_authenticated and getattr(user, "is_guardian", False)):
        return None
    try:
        return guardian_registrant(user)
    except Http404:
        return None


class InquiryForm(forms.Form):
    municipality = forms.ModelChoiceField(
        label=gettext_lazy("Municipality"),
        queryset=Municipality.objects.all(),
        empty_label=gettext_lazy("Please choose"),
        help_text=gettext_lazy("The municipality where your child's school is."),
    )
    name = forms.CharField(
        label=gettext_lazy("Your name"), max_length=MAX_NAME, validators=[text.single_line]
    )
    reply_to = forms.CharField(
        label=gettext_lazy("Mail address for the answer"),
        max_length=254,
        required=False,
        validators=[text.single_line],
        widget=forms.EmailInput(attrs={"autocomplete": "email", "inputmode": "email"}),
    )
    subject = forms.CharField(
        label=gettext_lazy("Subject"), max_length=MAX_SUBJECT, validators=[text.single_line]
    )
    # No max_length on the field: the verb refuses an over-long message with its own words,
    # and the counter in the message tells the guardian how much to cut.
    body = forms.CharField(
        label=gettext_lazy("Your question"),
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=gettext_lazy("At most %(max)d characters.") % {"max": MAX_BODY},
    )

    def __init__(self, *args: Any, registrant: Registrant | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        reply = self.fields["reply_to"]
        if registrant is not None:
            del self.fields["municipality"]
            reply.help_text = _("Leave empty to receive the answer at your registered address 1.")
        else:
            reply.help_text = _("Required: the answer is sent to this address.")


@require_http_methods(["GET", "POST"])
def inquiry(request: HttpRequest) -> HttpResponse:
    registrant = _guardian(request)
    form = InquiryForm(request.POST or None, registrant=registrant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        municipality = registrant.school.municipality if registrant else data["municipality"]
        draft = Draft(
            name=data["name"], subject=data["subject"], body=data["body"], reply_to=data["reply_to"]
        )
        try:
            filed = submit_inquiry(
                municipality, draft, registrant=registrant, ip_address=client_address(request)
            )
        except InquiryRefused as refusal:
            form.add_error(None, str(refusal))
        except ValidationError as error:
            form.add_error(None, error)
        else:
            request.session["inquiry_municipality"] = municipality.pk
            request.session["inquiry_reference"] = filed.reference
            return redirect("portal:inquiry_thanks")
    return render(request, "portal/inquiry.html", {"form": form, **_context(registrant)})


def inquiry_thanks(request: HttpRequest) -> HttpResponse:
    registrant = _guardian(request)
    context = _context(registrant)
    reference = request.session.get("inquiry_reference")
    context["reference"] = reference if isinstance(reference, str) else ""
    if registrant is None:
        chosen = request.session.get("inquiry_municipality")
        if isinstance(chosen, int):
            context["municipality"] = Municipality.objects.filter(pk=chosen).first()
    return render(request, "portal/inquiry_thanks.html", context)


def _context(registrant: Registrant | None) -> dict[str, Any]:
    if registrant is None:
        return {}
    return {
        "registrant": registrant,
        "school": registrant.school,
        "municipality": registrant.school.municipality,
    }


def _slot_list(slots: list[int]) -> str:
    return _(", ").join(str(slot) for slot in slots)


def help_page(request: HttpRequest) -> HttpResponse:
    registrant = _guardian(request)
    context = _context(registrant)
    if registrant is not None:
        municipality = registrant.school.municipality
        municipalities = [municipality]
        slots = sorted(municipality.broadcast_slots)
    else:
        municipalities = list(Municipality.objects.all())
        shared = {tuple(sorted(m.broadcast_slots)) for m in municipalities}
        # If municipalities differ, the page says so rather than naming slots that are wrong somewhere.
        slots = list(shared.pop()) if len(shared) == 1 else []
    context.update(
        municipalities=municipalities,
        broadcast_slots=_slot_list(slots) if slots else "",
        other_slots=_slot_list([s for s in SLOTS if s not in slots]) if slots else "",
        municipality_names=_("、").join(m.name for m in Municipality.objects.all()),
    )
    return render(request, "portal/help.html", context)

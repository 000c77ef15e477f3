"""Console: the support desk's inquiries (S13), listed, read and answered.

Inquiries are fetched through support.access (404 outside the staff member's scope);
support.desk records the answer, audits it and queues the mail to the guardian.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from mimamori import text
from mimamori.console.decorators import staff_required
from mimamori.console.views import _page, _render, _staff, outgoing_mails
from mimamori.support.access import get_inquiry, inquiries_for
from mimamori.support.desk import AlreadyAnswered, answer
from mimamori.support.models import InquiryStatus


class StatusFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=gettext_lazy("Status"),
        required=False,
        choices=[("", gettext_lazy("All")), *InquiryStatus.choices],
    )


class AnswerForm(forms.Form):
    answer = forms.CharField(
        label=gettext_lazy("Answer"), validators=[text.multi_line], widget=forms.Textarea(attrs={"rows": 10})
    )


@staff_required
def inquiries(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    form = StatusFilterForm(request.GET)
    found = inquiries_for(user)
    status = form.cleaned_data["status"] if form.is_valid() else ""
    if status:
        found = found.filter(status=status)
    counts = {
        "open": inquiries_for(user).filter(status=InquiryStatus.OPEN).count(),
    }
    return _render(request, "inquiries.html", {"form": form, "page": _page(request, found), "counts": counts})


@staff_required
@require_http_methods(["GET", "POST"])
def inquiry(request: HttpRequest, inquiry_id: int) -> HttpResponse:
    user = _staff(request)
    found = get_inquiry(user, inquiry_id)
    form = AnswerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            answer(found, user, form.cleaned_data["answer"], request=request)
        except AlreadyAnswered as refusal:
            flash.error(request, str(refusal))
            return redirect("console:inquiry", inquiry_id=found.pk)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            flash.success(request, _("The answer has been sent by mail and the inquiry is marked answered."))
            return redirect("console:inquiry", inquiry_id=found.pk)
    context = {
        "inquiry": found,
        "form": form,
        "answer_address": found.answer_address(),
        "mails": outgoing_mails(f"inquiry {found.pk}"),  # the copy to the desk, the answer
    }
    return _render(request, "inquiry.html", context)

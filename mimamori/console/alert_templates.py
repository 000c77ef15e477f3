"""Console pages for alert templates (P6): the list every staff member uses to start a
broadcast (「テンプレートから作成」), the fill-in form, and editing (municipality staff their
city's, the centre all; audited by registry.alert_templates).

Filling in changes nothing: the form is a GET that leads to compose with the text prefilled.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from mimamori import text
from mimamori.accounts.models import User
from mimamori.console.broadcast_forms import AnswersField
from mimamori.console.decorators import staff_required
from mimamori.console.views import _render, _staff
from mimamori.registry import alert_templates
from mimamori.registry.access import municipalities_for
from mimamori.registry.models import AlertTemplate, Municipality


class TemplateForm(forms.ModelForm):
    answers = AnswersField(
        label=gettext_lazy("Answer choices (safety check)"),
        help_text=gettext_lazy(
            "Broadcasts made from this template ask guardians to choose one, e.g. "
            "無事です／けがをしています／支援が必要です. 2 to 6 choices; leave empty for none."
        ),
    )

    class Meta:
        model = AlertTemplate
        fields = ["municipality", "name", "subject", "body", "urgent", "request_confirmation", "answers"]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cities: QuerySet[Municipality] = municipalities_for(user).order_by("code")
        field = self.fields["municipality"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = cities
        field.empty_label = None
        field.label = gettext_lazy("Municipality")
        known = "、".join(f"{{{f.placeholder}}}" for f in alert_templates.FIELDS)
        self.fields["body"].help_text = _(
            "Fields staff fill in when they use the template: %(fields)s. Write them where the text goes."
        ) % {"fields": known}


class FillForm(forms.Form):
    """The fields a template uses, as a GET form."""

    def __init__(self, *args: Any, template: AlertTemplate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in alert_templates.fields_of(template):
            self.fields[field.key] = forms.CharField(
                label=field.label,
                max_length=1000 if field.multiline else 200,
                validators=[text.multi_line if field.multiline else text.single_line],
                widget=forms.Textarea(attrs={"rows": 4}) if field.multiline else forms.TextInput(),
                help_text=f"{{{field.placeholder}}}",
            )


@staff_required
@require_GET
def alert_template_list(request: HttpRequest) -> HttpResponse:
    user = _staff(request)
    found = alert_templates.templates_for(user).order_by("municipality__code", "name", "pk")
    return _render(
        request,
        "alert_template_list.html",
        {"templates": found, "can_edit": alert_templates.can_edit_templates(user)},
    )


def _edit(request: HttpRequest, template: AlertTemplate | None) -> HttpResponse:
    user = _staff(request)
    if not alert_templates.can_edit_templates(user):
        raise Http404
    form = TemplateForm(request.POST or None, instance=template, user=user)
    if request.method == "POST" and form.is_valid():
        try:
            saved = alert_templates.save(form.save(commit=False), by=user)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            flash.success(request, _("The template 「%(name)s」 is saved.") % {"name": saved.name})
            return redirect("console:alert_templates")
    return _render(request, "alert_template_form.html", {"form": form, "template": template})


@staff_required
@require_http_methods(["GET", "POST"])
def alert_template_new(request: HttpRequest) -> HttpResponse:
    return _edit(request, None)


@staff_required
@require_http_methods(["GET", "POST"])
def alert_template_edit(request: HttpRequest, template_id: int) -> HttpResponse:
    return _edit(request, alert_templates.editable_template(_staff(request), template_id))


@staff_required
@require_POST
def alert_template_delete(request: HttpRequest, template_id: int) -> HttpResponse:
    user = _staff(request)
    template = alert_templates.editable_template(user, template_id)
    alert_templates.delete(template, by=user)
    flash.success(request, _("The template 「%(name)s」 is deleted.") % {"name": template.name})
    return redirect("console:alert_templates")


@staff_required
@require_GET
def alert_template_use(request: HttpRequest, template_id: int) -> HttpResponse:
    """Fill in the template's fields, then on to compose with the subject and body prefilled."""
    template = alert_templates.get_template(_staff(request), template_id)
    submitted = "go" in request.GET
    form = FillForm(request.GET if submitted else None, template=template)
    if submitted and form.is_valid():
        subject, body = alert_templates.fill(template, form.cleaned_data)
        query = {"subject": subject, "body": body}
        if template.urgent:
            query["urgent"] = "1"
        if template.request_confirmation or template.answers:
            query["request_confirmation"] = "1"
        pairs = [*query.items(), *(("answers", choice) for choice in template.answers)]
        return redirect(f"{reverse('console:broadcast_new')}?{urlencode(pairs)}")
    return _render(request, "alert_template_use.html", {"form": form, "template": template})

"""Forms of the staff console: the staff login and the registrant list's search and filters."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.registry.models import RegistrantStatus, School


class StaffAuthenticationForm(AuthenticationForm):
    """Django's login form, for staff only.

    A guardian's correct password gets the same generic error as a wrong one, so the staff
    login does not confirm which guardian login IDs exist.
    """

    error_messages = {
        "invalid_login": _("The login ID or password is incorrect."),
        "inactive": _("The login ID or password is incorrect."),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = _("Login ID")
        self.fields["username"].validators.append(text.single_line)

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not getattr(user, "is_console_user", False):
            raise ValidationError(self.error_messages["invalid_login"], code="invalid_login")


class SchoolSearchForm(forms.Form):
    q = forms.CharField(label=_("School name"), required=False, max_length=64, validators=[text.single_line])


class SchoolChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.municipality.name} {obj.name}"


class RegistrantFilterForm(forms.Form):
    """GET filters; each field that is valid applies even when another one is not."""

    q = forms.CharField(
        label=_("Search"),
        required=False,
        max_length=254,
        validators=[text.single_line],
        help_text=_("Child's name, kana, login ID, mail address or IC tag ID"),
    )
    school = SchoolChoiceField(label=_("School"), queryset=School.objects.none(), required=False)
    grade = forms.TypedChoiceField(
        label=_("Grade"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("All"))] + [(g, str(g)) for g in range(1, 10)],
    )
    class_name = forms.CharField(
        label=_("Class"), required=False, max_length=16, validators=[text.single_line]
    )
    status = forms.ChoiceField(
        label=_("Status"), required=False, choices=[("", _("All")), *RegistrantStatus.choices]
    )

    def __init__(self, *args: Any, schools: QuerySet[School], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["school"]
        assert isinstance(field, SchoolChoiceField)
        field.queryset = schools
        field.empty_label = str(_("All schools"))

    def applicable(self) -> dict[str, Any]:
        """The filters that passed validation, without the empty ones."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value not in (None, "")}

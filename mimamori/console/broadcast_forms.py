"""The compose form of the console: what to say, and whom to say it to.

The form only reads what staff posted; whether the scope lies inside the user's own is
decided by targeting.resolve_scope, whose errors land on the same field names.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.accounts.models import Role, User
from mimamori.broadcasts.models import BODY_MAX, SUBJECT_MAX
from mimamori.registry.access import municipalities_for, registrants_for, schools_for
from mimamori.registry.models import RegistrantStatus

# Class lists are typed on phones too: accept the Japanese comma and spaces as separators.
CLASS_SEPARATORS = re.compile(r"[,、，\s]+")
# Minutes after sending that staff can pick for automatic reminders (P3).
REMINDER_CHOICES = (30, 60, 120)


class IdsField(forms.MultipleChoiceField):
    """Checkboxes whose posted values are not checked against the choices shown.

    A value outside the offered choices is not a typo but a scope question, and the scope
    rule answers it with its own message (targeting.resolve_scope).
    """

    widget = forms.CheckboxSelectMultiple

    def valid_value(self, value: Any) -> bool:
        return True

    def validate(self, value: Any) -> None:
        super().validate(value)
        # Not checked against the choices, so checked against the input rule: a NUL would
        # otherwise reach the database's lookup (a server error on PostgreSQL).
        for item in value:
            text.single_line(item)


class SchoolIdsField(IdsField):
    def clean(self, value: Any) -> list[int]:
        try:
            return [int(v) for v in super().clean(value)]
        except ValueError:
            raise ValidationError(_("You can only send to schools in your own scope.")) from None


class BroadcastForm(forms.Form):
    subject = forms.CharField(
        label=_("Subject"),
        max_length=SUBJECT_MAX,
        validators=[text.single_line],
        error_messages={"required": _("Please enter a subject.")},
    )
    body = forms.CharField(
        label=_("Message"),
        max_length=BODY_MAX,
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 10}),
        error_messages={"required": _("Please enter the message.")},
    )
    urgent = forms.BooleanField(
        label=_("Urgent"),
        required=False,
        help_text=_("Urgent mail is sent ahead of other mail, and its subject starts with 【緊急】."),
    )
    request_confirmation = forms.BooleanField(
        label=_("Ask guardians to confirm they have read it"),
        required=False,
    )
    reminder_minutes = forms.TypedMultipleChoiceField(
        label=_("Automatic reminders to the unconfirmed"),
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The same mail, with the same link, to households that have not confirmed by then."),
    )
    municipalities = IdsField(label=_("Municipalities"), required=False)
    schools = SchoolIdsField(label=_("Schools"), required=False)
    grades = forms.TypedMultipleChoiceField(
        label=_("Grades"),
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None chosen: every grade."),
    )
    classes = forms.CharField(
        label=_("Classes"),
        required=False,
        max_length=200,
        validators=[text.single_line],
        help_text=_("Class names separated by commas, e.g. 1,2. Empty: every class."),
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        municipalities = municipalities_for(user)
        schools = schools_for(user)
        self.choose_municipalities = user.role == Role.CENTRE
        self.choose_schools = user.role in (Role.CENTRE, Role.MUNICIPALITY)
        self.fields["municipalities"].choices = [(m.code, m.name) for m in municipalities]  # type: ignore[attr-defined]
        self.fields["schools"].choices = [  # type: ignore[attr-defined]
            (s.pk, f"{s.municipality.name} {s.name}" if self.choose_municipalities else s.name)
            for s in schools
        ]
        if user.role == Role.MUNICIPALITY:
            self.fields["schools"].help_text = _("None chosen: every school of the municipality.")
        # Grades 7–9 only where a school has them (義務教育学校); elementary schools stop at 6.
        top = registrants_for(user).filter(status=RegistrantStatus.ACTIVE).aggregate(top=Max("grade"))["top"]
        self.fields["grades"].choices = [(g, str(g)) for g in range(1, max(6, top or 0) + 1)]  # type: ignore[attr-defined]
        # Municipality setting (S12): no confirmation links where a municipality turned them off.
        self.offers_confirmation = (
            municipalities.exists() and not municipalities.filter(confirmation_links_enabled=False).exists()
        )
        if not self.offers_confirmation:
            del self.fields["request_confirmation"]
            del self.fields["reminder_minutes"]
        else:
            self.fields["reminder_minutes"].choices = [  # type: ignore[attr-defined]
                (m, gettext("%(minutes)d minutes later") % {"minutes": m}) for m in REMINDER_CHOICES
            ]
        self.scope_names = [s.name for s in schools] if not self.choose_schools else []

    def clean_classes(self) -> list[str]:
        text = self.cleaned_data["classes"]
        return [c for c in CLASS_SEPARATORS.split(text) if c]

"""The compose form of the console: what to say, and whom to say it to.

The form only reads what staff posted; whether the scope lies inside the user's own is
decided by targeting.resolve_scope, whose errors land on the same field names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.accounts.models import Role, User
from mimamori.broadcasts.models import BODY_MAX, SUBJECT_MAX, Broadcast
from mimamori.registry import answers as answer_rules
from mimamori.registry.access import municipalities_for, registrants_for, schools_for
from mimamori.registry.models import RegistrantStatus, class_key

# Class lists are typed on phones too: accept the Japanese comma and spaces as separators.
CLASS_SEPARATORS = re.compile(r"[,、，\s]+")
# Minutes after sending that staff can pick for automatic reminders (P3).
REMINDER_CHOICES = (30, 60, 120)
# Registrants a broadcast can reach: active, with 連絡メールを受信する on (the picker's counts).
_COUNTED = Q(status=RegistrantStatus.ACTIVE, receive_broadcasts=True)


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


class GradesField(IdsField):
    """Whole grades: the picker offers those with registrants, a link may name any (1–9, which
    targeting.resolve_scope checks)."""

    def clean(self, value: Any) -> list[int]:
        try:
            return [int(v) for v in super().clean(value)]
        except ValueError:
            raise ValidationError(_("Grades are numbers from 1 to 9.")) from None


@dataclass(frozen=True)
class GradeChoice:
    """One grade of the picker: the grade's own checkbox and one per class, with counts."""

    grade: int
    registrants: int
    whole: Any  # the grade's BoundWidget in `grades`
    classes: list[Any]  # BoundWidgets of `groups`


def group_value(grade: int, class_name: str) -> str:
    return f"{grade}-{class_name}"


class TargetForm(forms.Form):
    """Whom to send to: municipalities (centre), schools (municipality and centre), then whole
    grades and classes of a grade, built from the registry as it is, with counts of registrants.

    Any set of whole grades and classes goes into the scope as chosen: 3年2組 and 5年1組 reach
    those two classes and no other (targeting.resolve_scope's `groups`). Classes named in
    `classes` (old links, typed by hand) are folded as the registry folds them: 1組, １組 and 1
    are class 1; with whole grades and no class ticked they keep their old meaning, grades ×
    classes.
    """

    municipalities = IdsField(label=_("Municipalities"), required=False)
    schools = SchoolIdsField(label=_("Schools"), required=False)
    grades = GradesField(label=_("Grades"), required=False)
    groups = IdsField(label=_("Classes"), required=False)
    classes = forms.CharField(
        label=_("Classes"),
        required=False,
        max_length=200,
        validators=[text.single_line],
        widget=forms.HiddenInput,
    )

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        municipalities = municipalities_for(user)
        schools = list(
            schools_for(user).annotate(
                n=Count(
                    "registrants",
                    filter=Q(
                        registrants__status=RegistrantStatus.ACTIVE, registrants__receive_broadcasts=True
                    ),
                )
            )
        )
        self.choose_municipalities = user.role == Role.CENTRE
        self.choose_schools = user.role in (Role.CENTRE, Role.MUNICIPALITY)
        self.fields["municipalities"].choices = [(m.code, m.name) for m in municipalities]  # type: ignore[attr-defined]
        self.fields["schools"].choices = [  # type: ignore[attr-defined]
            (
                s.pk,
                _people(f"{s.municipality.name} {s.name}" if self.choose_municipalities else s.name, s.n),
            )
            for s in schools
        ]
        if user.role == Role.MUNICIPALITY:
            self.fields["schools"].help_text = _("None chosen: every school of the municipality.")
        # The grades and classes there are (義務教育学校 have grades 7–9), counted over the
        # user's whole scope; the live count says what the chosen schools hold.
        counted = (
            registrants_for(user)
            .filter(_COUNTED)
            .order_by()
            .values_list("grade", "class_name")
            .annotate(n=Count("pk"))
        )
        self.existing: dict[tuple[int, str], int] = {}
        for grade, class_name, n in counted:
            key = (grade, class_key(class_name))
            self.existing[key] = self.existing.get(key, 0) + n
        by_grade: dict[int, list[tuple[str, int]]] = {}
        for (grade, class_name), n in sorted(self.existing.items(), key=_class_order):
            by_grade.setdefault(grade, []).append((class_name, n))
        self.grade_counts = {g: sum(n for _, n in classes) for g, classes in by_grade.items()}
        self.fields["grades"].choices = [  # type: ignore[attr-defined]
            (g, _people(gettext("Grade %(grade)d, all classes") % {"grade": g}, self.grade_counts[g]))
            for g in sorted(by_grade)
        ]
        self.fields["groups"].choices = [  # type: ignore[attr-defined]
            (group_value(g, c), _people(gettext("Class %(name)s") % {"name": c}, n))
            for g in sorted(by_grade)
            for c, n in by_grade[g]
        ]
        self.scope_names = [s.name for s in schools] if not self.choose_schools else []

    def picker(self) -> list[GradeChoice]:
        """The grades with their classes, for the template to lay out grade by grade."""
        wholes = {int(w.data["value"]): w for w in self["grades"]}
        classes: dict[int, list[Any]] = {}
        for widget in self["groups"]:
            classes.setdefault(int(str(widget.data["value"]).partition("-")[0]), []).append(widget)
        return [
            GradeChoice(g, self.grade_counts.get(g, 0), wholes[g], classes.get(g, [])) for g in sorted(wholes)
        ]

    def clean_classes(self) -> list[str]:
        typed = self.cleaned_data["classes"]
        return [key for c in CLASS_SEPARATORS.split(typed) if (key := class_key(c))]

    def clean_groups(self) -> list[tuple[int, str]]:
        chosen = []
        for value in self.cleaned_data["groups"]:
            grade, dash, name = value.partition("-")
            if not dash or not grade.isdigit() or not (key := class_key(name)):
                raise ValidationError(_("Choose classes from the list."))
            chosen.append((int(grade), key))
        return chosen

    def clean(self) -> dict[str, Any]:
        """Whole grades, classes of a grade and classes typed become the scope as they are;
        resolve_scope decides what they reach (a class of a grade chosen whole adds nothing)."""
        data = self.cleaned_data
        data["scope_grades"] = sorted(set(data.get("grades") or ()))
        data["scope_classes"] = list(data.get("classes") or ())
        data["scope_groups"] = sorted(set(data.get("groups") or ()))
        return data

    def initial_from(self, broadcast: Broadcast) -> dict[str, Any]:
        """The picker's values for a saved draft's scope (editing a draft)."""
        initial = {
            "municipalities": [m.code for m in broadcast.municipalities.all()],
            "schools": [s.pk for s in broadcast.schools.all()],
        }
        if broadcast.grade_classes:
            return {
                **initial,
                "grades": list(broadcast.grades),
                "groups": [group_value(g, c) for g, c in broadcast.grade_classes],
            }
        return {**initial, **self.picked(broadcast.grades, broadcast.classes)}

    def picked(self, grades: list[int], classes: list[str]) -> dict[str, Any]:
        """The picker's boxes for grades × classes: whole grades, or the classes there are."""
        if not classes:
            return {"grades": list(grades), "groups": []}
        keys = {class_key(c) for c in classes}
        return {
            "grades": [],
            "groups": [
                group_value(g, c)
                for g, c in sorted(self.existing)
                if c in keys and (not grades or g in grades)
            ],
        }


def _people(label: str, n: int) -> str:
    return gettext("%(label)s (%(count)d)") % {"label": label, "count": n}


def _class_order(item: tuple[tuple[int, str], int]) -> tuple[int, int, str]:
    (grade, name), _n = item
    # Numbered classes in number order (2 before 10), named ones after them.
    return (grade, int(name) if name.isdigit() else 10**6, name)


class AnswerInputs(forms.Widget):
    """Six text inputs of one name, read back as a list: a repeatable list that needs no
    JavaScript to submit (blank ones are dropped)."""

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        return format_html(
            '<ol class="answer-inputs">{}</ol>',
            format_html_join(
                "",
                '<li><input type="text" name="{}" id="id_{}_{}" value="{}" maxlength="{}"'
                ' aria-label="{}"></li>',
                (
                    (
                        name,
                        name,
                        n,
                        choice,
                        answer_rules.CHOICE_MAX,
                        gettext("Choice %(number)d") % {"number": n},
                    )
                    for n, choice in enumerate(answer_inputs(value), start=1)
                ),
            ),
        )

    def id_for_label(self, id_: str) -> str:
        return f"{id_}_1" if id_ else id_

    def value_from_datadict(self, data: Any, files: Any, name: str) -> list[str]:
        found = data.getlist(name) if hasattr(data, "getlist") else data.get(name) or []
        return [str(value) for value in (found if isinstance(found, list | tuple) else [found])]

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return name not in data


class AnswersField(forms.Field):
    """Answer choices (B1): blank inputs are dropped; 2–6 distinct one-line choices, or none."""

    widget = AnswerInputs

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        # More inputs than choices allowed can only be posted by hand; refuse rather than cut.
        return [str(choice).strip() for choice in value if str(choice).strip()][
            : answer_rules.MAX_CHOICES + 1
        ]

    def validate(self, value: list[str]) -> None:
        for choice in value:
            text.single_line(choice)
        if (message := answer_rules.problem(value)) is not None:
            raise ValidationError(message, code="answers")

    def prepare_value(self, value: Any) -> list[str]:
        return list(value or [])


def answer_inputs(value: Any) -> list[str]:
    """The values of the six inputs: the choices given, then blanks."""
    choices = [str(choice) for choice in (value or []) if str(choice)]
    return (choices + [""] * answer_rules.MAX_CHOICES)[: max(answer_rules.MAX_CHOICES, len(choices))]


class BroadcastForm(TargetForm):
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
    answers = AnswersField(
        label=_("Answer choices (safety check)"),
        help_text=_(
            "Instead of a bare read confirmation, guardians choose one answer per child, e.g. "
            "無事です／けがをしています／支援が必要です. 2 to 6 choices; leave empty for none."
        ),
    )
    reminder_minutes = forms.TypedMultipleChoiceField(
        label=_("Automatic reminders to the unconfirmed"),
        required=False,
        coerce=int,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("The same mail, with the same link, to households that have not confirmed by then."),
    )

    field_order = ["subject", "body"]

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        municipalities = municipalities_for(user)
        # Municipality setting (S12): no confirmation links where a municipality turned them off.
        self.offers_confirmation = (
            municipalities.exists() and not municipalities.filter(confirmation_links_enabled=False).exists()
        )
        if not self.offers_confirmation:
            # Answers are given through the mail's personal link, which such a city does not send.
            del self.fields["request_confirmation"]
            del self.fields["reminder_minutes"]
            del self.fields["answers"]
        else:
            self.fields["reminder_minutes"].choices = [  # type: ignore[attr-defined]
                (m, gettext("%(minutes)d minutes later") % {"minutes": m}) for m in REMINDER_CHOICES
            ]

    safety_answers = answer_rules.SAFETY

"""Answer choices (B1): what a broadcast (or an alert template) may ask guardians to choose from
instead of a bare read confirmation, e.g. 無事です / けがをしています / 支援が必要です.

A broadcast's choices are a list of 2 to 6 distinct one-line texts; an answer is stored as the
index of the chosen one (receipts.models.Receipt.answer), so the list never changes once the
broadcast has left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.translation import gettext as _

from mimamori import text

MIN_CHOICES = 2
MAX_CHOICES = 6
CHOICE_MAX = 40  # characters: a button's label on a phone

# The choices every business 安否確認 service offers after an earthquake.
SAFETY = ["無事です", "けがをしています", "支援が必要です"]


def problem(values: Iterable[object]) -> str | None:
    """What is wrong with a list of choices, in the user's language, or None. An empty list is
    fine: the broadcast asks no answer."""
    choices = list(values)
    if not choices:
        return None
    if not all(isinstance(choice, str) for choice in choices):
        return _("Each answer choice must be a text.")
    stripped = [cast(str, choice).strip() for choice in choices]
    if not MIN_CHOICES <= len(stripped) <= MAX_CHOICES:
        return _("Offer from %(min)d to %(max)d answer choices.") % {"min": MIN_CHOICES, "max": MAX_CHOICES}
    for choice in stripped:
        if not choice:
            return _("An answer choice is empty.")
        if len(choice) > CHOICE_MAX:
            return _("An answer choice is too long (at most %(max)d characters).") % {"max": CHOICE_MAX}
        if message := text.problem(choice):
            return str(message)
    if len(set(stripped)) != len(stripped):
        return _("The answer choices must differ from each other.")
    return None


def clean(values: Iterable[object]) -> list[str]:
    """The choices as saved (stripped), or ValidationError with problem()'s message."""
    choices = list(values)
    if (message := problem(choices)) is not None:
        raise ValidationError(message, code="answers")
    return [cast(str, choice).strip() for choice in choices]


@deconstructible
class ChoicesValidator:
    """The model field validator for a JSON list of answer choices."""

    def __call__(self, value: object) -> None:
        if not isinstance(value, list):
            raise ValidationError(_("The answer choices must be a list."), code="answers")
        clean(value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChoicesValidator)

    def __hash__(self) -> int:
        return hash(ChoicesValidator)


answer_choices = ChoicesValidator()

"""The console's form for a maintenance window, and the words its pages flash."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from mimamori import text
from mimamori.maintenance.models import MESSAGE_MAX, MaintenanceWindow
from mimamori.registry.models import Municipality

PLANNED = _("The maintenance window is planned. Guardians are told by mail at each municipality's lead time.")
CHANGED = _("The maintenance window is changed. Guardians already told are told again.")
UNCHANGED = _("Nothing was changed.")
CANCELLED = _("The maintenance window is cancelled. Guardians already told are told by mail.")
NOT_CANCELLED = _("This maintenance window was already cancelled or is over.")


def mailing_now(count: int) -> str:
    return ngettext(
        "Its notice is being mailed now to %(count)d address.",
        "Its notice is being mailed now to %(count)d addresses.",
        count,
    ) % {"count": count}


# <input type="datetime-local"> sends "2025-01-02T22:00"; phones show their own picker.
LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]


class LocalDateTimeInput(forms.DateTimeInput):
    input_type = "datetime-local"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%dT%H:%M", **kwargs)


class WindowForm(forms.Form):
    starts_at = forms.DateTimeField(
        label=_("Starts at"), input_formats=LOCAL_FORMATS, widget=LocalDateTimeInput()
    )
    ends_at = forms.DateTimeField(
        label=_("Ends at"), input_formats=LOCAL_FORMATS, widget=LocalDateTimeInput()
    )
    message = forms.CharField(
        label=_("Message to guardians"),
        max_length=MESSAGE_MAX,
        validators=[text.multi_line],
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("Shown in the notice mail and on the maintenance page."),
    )
    municipalities = forms.MultipleChoiceField(
        label=_("Municipalities affected"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked means every municipality."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["municipalities"].choices = [(m.code, m.name) for m in Municipality.objects.all()]  # type: ignore[attr-defined]

    @classmethod
    def for_window(cls, window: MaintenanceWindow) -> WindowForm:
        return cls(
            initial={
                "starts_at": timezone.localtime(window.starts_at),
                "ends_at": timezone.localtime(window.ends_at),
                "message": window.message,
                "municipalities": [m.code for m in window.municipalities.all()],
            }
        )

"""Guardian forms. Address rules live in registry.addresses; these forms only carry the input."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from mimamori import text
from mimamori.accounts.models import User
from mimamori.registry.models import SLOTS

# Typed on a phone: no auto-capitals or autocorrect, and the keypad or mail keyboard up front.
_LOGIN_ID_ATTRS = {"autocomplete": "username", "inputmode": "numeric", "autocapitalize": "off"}
_ADDRESS_ATTRS = {
    "inputmode": "email",
    "autocomplete": "email",
    "autocapitalize": "off",
    "spellcheck": "false",
}

GENERIC_LOGIN_ERROR = _(
    "The login ID or password is not correct. Please check them (the login ID is printed on the "
    "letter from the school) and try again."
)


class GuardianLoginForm(AuthenticationForm):
    """Django's login form (authenticate() with the request, so django-axes counts failures),
    accepting only guardians of active registrants."""

    error_messages = {
        "invalid_login": GENERIC_LOGIN_ERROR,
        "inactive": GENERIC_LOGIN_ERROR,
        "deregistered": _(
            "This registration has been cancelled, so you cannot log in. "
            "If you think this is a mistake, please contact the support desk."
        ),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].label = _("Login ID")
        self.fields["username"].widget.attrs.update(_LOGIN_ID_ATTRS)
        self.fields["username"].validators.append(text.single_line)
        self.fields["password"].label = _("Password")

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        # Staff sign in at the console; here they get the same answer as a wrong password,
        # so the portal tells an outsider nothing about which logins exist.
        if not isinstance(user, User) or user.role != "" or not hasattr(user, "registrant"):
            raise self.get_invalid_login_error()
        if not user.registrant.is_active:
            raise ValidationError(self.error_messages["deregistered"], code="deregistered")


class FirstLoginForm(forms.Form):
    # Named "username" like the login form, so django-axes reads the same login ID from either.
    username = forms.CharField(
        label=_("Login ID"),
        max_length=150,
        validators=[text.single_line],
        widget=forms.TextInput(attrs=_LOGIN_ID_ATTRS),
    )
    code = forms.CharField(
        label=_("Registration code"),
        max_length=32,
        validators=[text.single_line],
        help_text=_("The one-time code printed on the letter from the school, for example ABCD-EFGH-JKMN."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "characters"}),
    )
    new_password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        help_text=_("At least 8 characters. Avoid simple words and numbers only."),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password2 = forms.CharField(
        label=_("New password (again)"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first and second and first != second:
            self.add_error("new_password2", _("The two passwords do not match. Please enter them again."))
        return cleaned


class AddressForm(forms.Form):
    """アドレス1..4. No length or format checks here: registry.addresses explains every refusal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for slot in SLOTS:
            self.fields[f"address{slot}"] = forms.CharField(
                label=_("Address %(slot)d") % {"slot": slot},
                required=False,
                validators=[text.single_line],
                widget=forms.TextInput(attrs=_ADDRESS_ATTRS),
            )

    def values(self) -> list[str]:
        return [self.cleaned_data[f"address{slot}"] for slot in SLOTS]


class OptionsForm(forms.Form):
    receive_broadcasts = forms.BooleanField(label=_("Receive broadcast mail"), required=False)

    def __init__(self, *args: Any, gate_addresses: dict[int, str] | None = None, **kwargs: Any) -> None:
        """``gate_addresses`` (slot → address, "" if empty): offer the gate mails' slots (B6),
        where the school has a gate reader."""
        super().__init__(*args, **kwargs)
        if gate_addresses is not None:
            self.fields["gate_slots"] = forms.TypedMultipleChoiceField(
                label=_("Arrival and departure mail"),
                choices=[
                    (
                        slot,
                        _("Address %(slot)d: %(email)s")
                        % {"slot": slot, "email": email or _("not registered")},
                    )
                    for slot, email in gate_addresses.items()
                ],
                coerce=int,
                required=False,
                widget=forms.CheckboxSelectMultiple,
            )


class PasswordResetRequestForm(forms.Form):
    """パスワードを忘れた方: the login ID and one address registered for it."""

    username = forms.CharField(
        label=_("Login ID"),
        max_length=150,
        validators=[text.single_line],
        widget=forms.TextInput(attrs=_LOGIN_ID_ATTRS),
    )
    email = forms.CharField(
        label=_("Registered mail address"),
        max_length=254,
        validators=[text.single_line],
        help_text=_("One of the mail addresses registered for this login ID (address 1 to 4)."),
        widget=forms.TextInput(attrs=_ADDRESS_ATTRS),
    )


class GuardianSetPasswordForm(SetPasswordForm):
    """Django's form: both entries must match and pass the password validators for this user."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["new_password1"].label = _("New password")
        self.fields["new_password1"].help_text = _(
            "At least 8 characters. Avoid simple words and numbers only."
        )
        self.fields["new_password2"].label = _("New password (again)")
        self.fields["new_password2"].help_text = ""

"""Settings that protect users: checked so a refactor cannot quietly weaken them."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth.hashers import make_password

from mimamori.accounts.models import User


@pytest.mark.real_hashing
def test_passwords_are_hashed_with_argon2() -> None:
    assert make_password("correct-horse-battery").startswith("argon2$")


def test_debug_is_off_unless_asked() -> None:
    assert settings.DEBUG is False


def test_guardian_and_staff_share_one_user_model() -> None:
    assert settings.AUTH_USER_MODEL == "accounts.User"
    assert User._meta.get_field("role").blank


@pytest.mark.django_db
def test_migrations_are_in_sync_with_the_models() -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()

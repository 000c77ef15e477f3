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


@pytest.mark.django_db
def test_a_registration_mail_queued_before_the_upgrade_runs_after_it() -> None:
    """Migration registry 0003 points mails queued under the task's old module path at its new one."""
    import importlib

    from django.apps import apps
    from django_tasks_db.models import DBTaskResult

    from mimamori.registry.addresses import set_addresses
    from mimamori.registry.registrants import enrol
    from mimamori.registry.tasks import send_registration_complete
    from tests.cast import make_school

    moved = importlib.import_module("mimamori.registry.migrations.0003_registration_mail_task_moved")
    registrant = enrol(make_school(), child_name="見守 太郎", grade=1, class_name="1").registrant
    set_addresses(registrant, ["taro@example.jp", "", "", ""])
    queued = DBTaskResult.objects.get(task_path=moved.NEW)
    DBTaskResult.objects.filter(pk=queued.pk).update(task_path=moved.OLD)  # as the old code wrote it

    moved.forwards(apps, None)

    queued.refresh_from_db()
    assert queued.status == "READY"
    assert queued.task.func is send_registration_complete.func

"""The common 地震発生時の安否確認 template of municipalities created before answers existed gets the
choices its text already names (無事です / けがをしています / 支援が必要です), where the municipality
offers confirmation links; add_common gives them to municipalities created from now on."""

from __future__ import annotations

from typing import Any

from django.db import migrations

NAME = "地震発生時の安否確認"
SAFETY = ["無事です", "けがをしています", "支援が必要です"]  # registry.answers.SAFETY, frozen here


def forwards(apps: Any, schema_editor: Any) -> None:
    AlertTemplate = apps.get_model("registry", "AlertTemplate")
    for template in AlertTemplate.objects.filter(name=NAME, municipality__confirmation_links_enabled=True):
        if not template.answers:
            template.answers = SAFETY
            template.save(update_fields=["answers"])


class Migration(migrations.Migration):
    dependencies = [("registry", "0011_alert_template_answers")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]

"""The 登録完了メール's task moved from mimamori.mail.tasks to mimamori.registry.tasks (the mail app
keeps only what every mail shares). Mails still waiting in the embedded engine's queue when the
installation is upgraded are pointed at the new path, so none is lost. (Distributed mode: let the
workers empty the queues before upgrading: docs/operations.md, "Upgrading".)"""

from django.db import migrations

OLD = "mimamori.mail.tasks.send_registration_complete"
NEW = "mimamori.registry.tasks.send_registration_complete"


def forwards(apps, schema_editor):
    queued = apps.get_model("django_tasks_database", "DBTaskResult").objects.filter(task_path=OLD, status="READY")
    queued.update(task_path=NEW)


def backwards(apps, schema_editor):
    queued = apps.get_model("django_tasks_database", "DBTaskResult").objects.filter(task_path=NEW, status="READY")
    queued.update(task_path=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0002_deregistration"),
        ("django_tasks_database", "0021_conditional_partial_index_ordering"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]

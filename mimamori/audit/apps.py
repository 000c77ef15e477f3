from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The append-only audit log (P9): who sent, changed, exported, deregistered, logged in.

    Ground: every app writes to it through audit.log.record, and it imports none of them.
    """

    name = "mimamori.audit"
    label = "audit"

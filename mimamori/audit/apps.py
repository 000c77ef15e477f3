from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The append-only audit log (P9): who sent, changed, exported, deregistered, logged in."""

    name = "mimamori.audit"
    label = "audit"

    def ready(self) -> None:
        from mimamori.audit import signals

        signals.connect()

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Municipalities, schools, registrants and their addresses (S6–S8, S10, P8)."""

    name = "mimamori.registry"
    label = "registry"

    def ready(self) -> None:
        from mimamori.registry import logins, retention
        from mimamori.tasking import sweep

        logins.connect()
        # Deregistered children whose retention period is over lose their personal data (S10).
        sweep.register("erased", retention.erase_expired)

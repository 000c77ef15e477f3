from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """Municipalities, schools, registrants and their addresses (S6–S8, S10, P8)."""

    name = "mimamori.registry"
    label = "registry"

    def ready(self) -> None:
        from mimamori.mail import outbox
        from mimamori.registry import health, logins, reachtests, retention
        from mimamori.tasking import sweep

        logins.connect()
        # A 登録完了メール, support answer or notice that failed counts against its address (P5).
        outbox.failed.connect(health.outgoing_failed, dispatch_uid="mimamori.registry.health")
        # Deregistered children whose retention period is over lose their personal data (S10).
        sweep.register("erased", retention.erase_expired)
        # Each municipality's 到達テスト schedule, in the day, one school at a time (B4).
        sweep.register("reach_tests", reachtests.due_reach_tests)

from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    """Compose, target, fan out and deliver broadcasts (S1–S4, P1, P4, B2, B5)."""

    name = "mimamori.broadcasts"
    label = "broadcasts"

    def ready(self) -> None:
        from mimamori.broadcasts import erasure, recovery
        from mimamori.registry import retention
        from mimamori.tasking import sweep

        # Work a crash or a lost queue message left behind; broadcasts that are done.
        sweep.register("broadcasts", recovery.recover)
        retention.erasing.connect(erasure.erase_deliveries, dispatch_uid="mimamori.broadcasts.erasure")

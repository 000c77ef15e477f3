from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    """Compose, target, fan out and deliver broadcasts (S1–S4, P1, P4, B2, B5)."""

    name = "mimamori.broadcasts"
    label = "broadcasts"

    def ready(self) -> None:
        from mimamori.broadcasts import erasure, recovery, sending
        from mimamori.registry import retention
        from mimamori.tasking import sweep

        # Scheduled broadcasts whose time has come (P7).
        sweep.register("scheduled_sent", sending.send_due)
        # Work a crash or a lost queue message left behind; broadcasts that are done.
        sweep.register("broadcasts", recovery.recover)
        retention.erasing.connect(erasure.erase_deliveries, dispatch_uid="mimamori.broadcasts.erasure")

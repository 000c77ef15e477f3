from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    """Read confirmation (受信確認): the link in each mail, and what it records (S5, S15)."""

    name = "mimamori.receipts"
    label = "receipts"

    def ready(self) -> None:
        from mimamori.receipts import demo, reminders
        from mimamori.registry import demo as registry_demo
        from mimamori.tasking import sweep

        # Automatic reminders to the unconfirmed (P3) whose time has come.
        sweep.register("reminders", reminders.due_reminders)
        # The demo's past broadcasts, confirmed and answered (`mimamori run --demo`).
        registry_demo.register("past_broadcasts", demo.load_past_broadcasts)

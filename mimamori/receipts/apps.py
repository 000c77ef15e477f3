from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    """Read confirmation (受信確認): the link in each mail, and what it records (S5, S15)."""

    name = "mimamori.receipts"
    label = "receipts"

    def ready(self) -> None:
        from mimamori.receipts import reminders
        from mimamori.tasking import sweep

        # Automatic reminders to the unconfirmed (P3) whose time has come.
        sweep.register("reminders", reminders.due_reminders)

from django.apps import AppConfig


class ReceiptsConfig(AppConfig):
    """Read confirmation (受信確認): the link in each mail, and what it records (S5, S15)."""

    name = "mimamori.receipts"
    label = "receipts"

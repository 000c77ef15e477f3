from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    """Compose, target, fan out and deliver broadcasts (S1–S4, P1, P4, B2, B5)."""

    name = "mimamori.broadcasts"
    label = "broadcasts"

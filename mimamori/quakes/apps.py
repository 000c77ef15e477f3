from django.apps import AppConfig


class QuakesConfig(AppConfig):
    """Earthquakes (B10): JMA's disaster XML read, and the 安否確認 broadcast it sends by itself."""

    name = "mimamori.quakes"
    label = "quakes"

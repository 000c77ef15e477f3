from django.apps import AppConfig


class QuakesConfig(AppConfig):
    """Earthquakes (B10): JMA's disaster XML read, and the 安否確認 broadcast it sends by itself."""

    name = "mimamori.quakes"
    label = "quakes"

    def ready(self) -> None:
        from mimamori.quakes import alerts
        from mimamori.tasking import sweep

        # The net under the release task: a held alert whose task was lost leaves at the next sweep.
        sweep.register("quake_alerts", alerts.release_due)

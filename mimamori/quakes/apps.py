from django.apps import AppConfig


class QuakesConfig(AppConfig):
    """Earthquakes (B10): JMA's disaster XML read, and the 安否確認 broadcast it sends by itself."""

    name = "mimamori.quakes"
    label = "quakes"

    def ready(self) -> None:
        from mimamori.quakes import alerts, feed
        from mimamori.tasking import sweep

        # The net under the release task: a held alert whose task was lost leaves at the next
        # sweep. First, because polling a slow feed can hold the sweep for tens of seconds.
        sweep.register("quake_alerts", alerts.release_due)
        # JMA's Atom feed, when MIMAMORI_JMA_FEED_URL is set (a no-op otherwise).
        sweep.register("jma_feed", feed.poll_due)

"""The demo's earthquake settings: the seed's three cities by their JMA codes, so that a drill
on the console's 地震 page (or `mimamori jma-ingest` of a test document) shows the whole path."""

from __future__ import annotations

from mimamori.quakes.models import EarthquakeSettings
from mimamori.registry.models import Municipality

# Demo municipality code → (JMA city code, hold in seconds). 岩見沢市 holds a minute, so the
# cancel button can be tried; the others send at once.
DEMO_CITIES = {"iwamizawa": ("0121000", 60), "takikawa": ("0122500", 0), "yubari": ("0120900", 0)}


def configure_demo() -> int:
    """Give the demo municipalities their earthquake settings unless they have some; how many."""
    added = 0
    for municipality in Municipality.objects.filter(code__in=DEMO_CITIES, earthquake__isnull=True):
        city_code, hold = DEMO_CITIES[municipality.code]
        EarthquakeSettings.objects.create(
            municipality=municipality, city_codes=[city_code], hold_seconds=hold
        )
        added += 1
    return added

"""`mimamori erase-expired`: erase deregistered children's personal data now (S10).

The worker's sweep does the same every few seconds; this is for installations that run no
worker for a while, or an operator who wants to see it done.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from mimamori.registry.retention import erase_expired


class Command(BaseCommand):
    help = "Erase the personal data of registrants deregistered longer ago than MIMAMORI_RETENTION_DAYS."

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while erased := erase_expired():
            total += erased
        days = settings.MIMAMORI_RETENTION_DAYS
        self.stdout.write(f"Erased {total} registrant(s) deregistered more than {days} days ago.")

"""What a readable JMA report sets off: part C of issue 15 decides (the municipalities' thresholds,
the hold, the 安否確認 broadcast). This placeholder is replaced when the parts are merged."""

from __future__ import annotations

from mimamori.quakes.jma import Report
from mimamori.quakes.models import JmaDocument


def receive(report: Report, document: JmaDocument) -> None:
    """Called by ingest.ingest() once for each new, readable document, inside the transaction that
    records it; part C decides what happens."""
    return

"""Background tasks of the quakes app: thin wrappers that take IDs and call the verbs."""

from __future__ import annotations

from mimamori.quakes import alerts
from mimamori.tasking import task


@task()
def release_quake_alert(alert_id: int) -> bool:
    """The hold of an earthquake alert is over: send it (queued to run at that moment)."""
    return alerts.release(alert_id)

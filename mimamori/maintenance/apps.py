from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    """Maintenance windows of the guardian site (S9): notices by mail, the 503 page meanwhile."""

    name = "mimamori.maintenance"
    label = "maintenance"

    def ready(self) -> None:
        from mimamori.maintenance import notices
        from mimamori.tasking import sweep

        # Maintenance notices (S9) whose time has come.
        sweep.register("maintenance_notices", notices.due_notices)

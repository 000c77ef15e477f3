from django.apps import AppConfig


class MaintenanceConfig(AppConfig):
    """Maintenance windows of the guardian site (S9): notices by mail, the 503 page meanwhile."""

    name = "mimamori.maintenance"
    label = "maintenance"

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Cross-cutting pieces with no domain of their own: base templates, the run command."""

    name = "mimamori.core"
    label = "core"

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "mimamori.console"
    label = "console"

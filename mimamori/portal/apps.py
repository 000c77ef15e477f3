from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "mimamori.portal"
    label = "portal"

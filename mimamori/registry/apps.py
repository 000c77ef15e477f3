from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "mimamori.registry"
    label = "registry"

from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "mimamori.api"
    label = "api"

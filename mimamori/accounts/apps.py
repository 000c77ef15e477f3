from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mimamori.accounts"
    label = "accounts"

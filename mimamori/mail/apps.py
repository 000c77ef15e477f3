from django.apps import AppConfig


class MailConfig(AppConfig):
    name = "mimamori.mail"
    label = "mail"

from django.apps import AppConfig


class SupportConfig(AppConfig):
    """The support desk (S13): guardians' inquiries and the staff's answers."""

    name = "mimamori.support"
    label = "support"

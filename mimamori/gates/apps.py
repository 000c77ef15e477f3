from django.apps import AppConfig


class GatesConfig(AppConfig):
    """登下校通知 (B6) and attendance exceptions (B11): IC-tag readers at the school gate post
    passes, the family gets a mail per pass, and at the school's time staff learn which children
    have neither passed nor been reported absent."""

    name = "mimamori.gates"
    label = "gates"

from django.apps import AppConfig


class MailConfig(AppConfig):
    """Ground: what every mail shares (building, SMTP, bounces, the outbox of mails that are not
    broadcasts) and the development mailbox. It knows no app above it."""

    name = "mimamori.mail"
    label = "mail"

    def ready(self) -> None:
        from mimamori.mail import outbox
        from mimamori.tasking import sweep

        # Mails a dead worker held, or whose queue message was lost.
        sweep.register("mail", outbox.recover)

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "mimamori.accounts"
    label = "accounts"

    def ready(self) -> None:
        from mimamori.accounts import throttle
        from mimamori.tasking import sweep

        throttle.connect()
        sweep.register("accounts", throttle.prune)

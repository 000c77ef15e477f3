from django.apps import AppConfig


class GatesConfig(AppConfig):
    """登下校通知 (B6) and attendance exceptions (B11): IC-tag readers at the school gate post
    passes, the family gets a mail per pass, and at the school's time staff learn which children
    have neither passed nor been reported absent."""

    name = "mimamori.gates"
    label = "gates"

    def ready(self) -> None:
        from mimamori.gates import attendance, demo, retention
        from mimamori.registry import demo as registry_demo
        from mimamori.registry import retention as registry_retention
        from mimamori.tasking import sweep

        # The exception list of each school whose check time has come today (B11).
        sweep.register("gate_attendance", attendance.check_due)
        # Passes, 欠席連絡 and list rows past MIMAMORI_GATE_RETENTION_DAYS.
        sweep.register("gate_retention", retention.erase_old)
        registry_retention.erasing.connect(
            retention.erase_registrant, dispatch_uid="mimamori.gates.retention"
        )
        # The demo's gate readers and a school day's passes (`mimamori run --demo`).
        registry_demo.register("gates", demo.load_gates)

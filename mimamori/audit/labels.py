"""What each audit action is called on the console (P9): one label for every action code that
``record()`` is called with anywhere (tests/test_audit_labels.py walks the code and fails on
a code without a label). Labels are English msgids; the Japanese is in this app's locale.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import pgettext_lazy


def _(label: str) -> Promise:
    # A context of their own: another app's "Login" may be a button, not an action.
    return pgettext_lazy("audit action", label)


ACTION_LABELS: dict[str, Promise] = {
    # Logins and passwords
    "login.succeeded": _("Login"),
    "login.failed": _("Login failed"),
    "login.locked_out": _("Login locked"),
    "login.unlocked": _("Login lock lifted"),
    "password_reset.requested": _("Password reset requested"),
    "password_reset.completed": _("Password set again"),
    "staff.password_reset": _("Staff password reset link issued"),
    "staff.created": _("Staff login created"),
    "api_token.issued": _("API token issued"),
    # Broadcasts
    "broadcast.sent": _("Broadcast sent"),
    "broadcast.retried": _("Broadcast sent again to failed addresses"),
    "broadcast.scheduled": _("Broadcast scheduled"),
    "broadcast.cancelled": _("Scheduled broadcast cancelled"),
    "broadcast.draft_deleted": _("Draft deleted"),
    "broadcast.answers_closed": _("Answering closed"),
    "alert_template.created": _("Alert template created"),
    "alert_template.changed": _("Alert template changed"),
    "alert_template.deleted": _("Alert template deleted"),
    "reminder.sent": _("Reminder sent"),
    "export.unconfirmed_csv": _("Unconfirmed list downloaded (CSV)"),
    "export.answers_csv": _("List of an answer downloaded (CSV)"),
    # Registry
    "registrant.created": _("Registrant created"),
    "registrant.imported": _("Roster imported"),
    "registrant.addresses_changed": _("Addresses changed"),
    "registrant.option_changed": _("Broadcast option changed"),
    "registrant.deregistered": _("Registration ended"),
    "registrant.transferred_in": _("Transfer received"),
    "registrant.erased": _("Personal data erased"),
    "registrant.tag_changed": _("IC tag changed"),
    "registrant.tag_reassigned": _("IC tag moved from another child"),
    "deregistration.requested": _("Deregistration requested"),
    "deregistration.rejected": _("Deregistration request rejected"),
    "deregistration.withdrawn": _("Deregistration request withdrawn"),
    "export.registration_letters": _("Registration letters re-issued"),
    "export.undeliverable_csv": _("Addresses mail does not reach downloaded (CSV)"),
    "reach_test.started": _("Reach test started"),
    # Municipalities, mail and carriers
    "municipality.settings_changed": _("Municipality settings changed"),
    "municipality.emblem_changed": _("Municipality emblem changed"),
    "dkim.key_created": _("DKIM signing key created"),
    "carrier.changed": _("Carrier profile changed"),
    "carrier.resumed": _("Carrier pause ended by hand"),
    # Maintenance and support
    "maintenance.planned": _("Maintenance window planned"),
    "maintenance.changed": _("Maintenance window changed"),
    "maintenance.moved": _("Maintenance window moved"),
    "maintenance.cancelled": _("Maintenance window cancelled"),
    "inquiry.answered": _("Inquiry answered"),
    # Earthquakes (B10)
    "quake.alert_raised": _("Earthquake alert raised"),
    "quake.alert_updated": _("Earthquake alert updated by a later report"),
    "quake.alert_released": _("Earthquake alert sent after the hold"),
    "quake.alert_cancelled": _("Earthquake alert cancelled by staff"),
    "quake.alert_withdrawn": _("Earthquake report withdrawn by JMA"),
    "quake.drill": _("Earthquake drill"),
    "quake.settings_changed": _("Earthquake settings changed"),
    # Gates (B6): readers and passes
    "gate_reader.registered": _("Gate reader registered"),
    "gate_reader.revoked": _("Gate reader revoked"),
    "registrant.gate_slots_changed": _("Gate mail addresses chosen"),
}


def action_label(action: str) -> str:
    """The action's name in the reader's language; an unknown code (an old or test event) as
    recorded."""
    label = ACTION_LABELS.get(action)
    return str(label) if label is not None else action

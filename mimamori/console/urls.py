from django.urls import path

from mimamori.console import (
    audit,
    broadcasts,
    carriers,
    deregistration,
    maintenance,
    municipalities,
    reachtests,
    receipts,
    reminders,
    roster,
    support,
    undeliverable,
    views,
)

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("schools/", views.schools, name="schools"),
    path("schools/<int:school_id>/", views.school, name="school"),
    path("schools/<int:school_id>/roster/", roster.roster_upload, name="roster_upload"),
    path("schools/<int:school_id>/letters/", roster.letters, name="letters"),
    path("schools/<int:school_id>/undeliverable/", undeliverable.undeliverable, name="undeliverable"),
    path(
        "schools/<int:school_id>/undeliverable.csv", undeliverable.undeliverable_csv, name="undeliverable_csv"
    ),
    path("schools/<int:school_id>/reach-tests/new/", reachtests.reach_test_new, name="reach_test_new"),
    path("reach-tests/<int:reach_test_id>/", reachtests.reach_test, name="reach_test"),
    path("registrants/", views.registrants, name="registrants"),
    path("registrants/<int:registrant_id>/", views.registrant, name="registrant"),
    path("broadcasts/", broadcasts.broadcasts, name="broadcasts"),
    path("broadcasts/new/", broadcasts.broadcast_new, name="broadcast_new"),
    path("broadcasts/<int:broadcast_id>/", broadcasts.broadcast, name="broadcast"),
    path("broadcasts/<int:broadcast_id>/send/", broadcasts.broadcast_send, name="broadcast_send"),
    path("broadcasts/<int:broadcast_id>/retry/", broadcasts.broadcast_retry, name="broadcast_retry"),
    path("broadcasts/<int:broadcast_id>/remind/", reminders.broadcast_remind, name="broadcast_remind"),
    path("broadcasts/<int:broadcast_id>/progress/", broadcasts.broadcast_progress, name="broadcast_progress"),
    path("broadcasts/<int:broadcast_id>/receipts/", receipts.broadcast_receipts, name="broadcast_receipts"),
    path(
        "broadcasts/<int:broadcast_id>/receipts/data/",
        receipts.broadcast_receipts_data,
        name="broadcast_receipts_data",
    ),
    path(
        "broadcasts/<int:broadcast_id>/unconfirmed/",
        receipts.broadcast_unconfirmed,
        name="broadcast_unconfirmed",
    ),
    path(
        "broadcasts/<int:broadcast_id>/unconfirmed.csv",
        receipts.broadcast_unconfirmed_csv,
        name="broadcast_unconfirmed_csv",
    ),
    path("audit/", audit.audit_log, name="audit"),
    path("deregistrations/", deregistration.deregistrations, name="deregistrations"),
    path(
        "registrants/<int:registrant_id>/deregistration/",
        deregistration.registrant_deregistration,
        name="registrant_deregistration",
    ),
    path(
        "registrants/<int:registrant_id>/deregistration/approve/",
        deregistration.approve,
        name="deregistration_approve",
    ),
    path(
        "registrants/<int:registrant_id>/deregistration/reject/",
        deregistration.reject,
        name="deregistration_reject",
    ),
    path(
        "schools/<int:school_id>/transfer-in/", deregistration.school_transfer_in, name="school_transfer_in"
    ),
    path("municipalities/", municipalities.municipalities, name="municipalities"),
    path("municipalities/<slug:code>/", municipalities.municipality_settings, name="municipality_settings"),
    path("carriers/", carriers.carrier_profiles, name="carrier_profiles"),
    path("carriers/<slug:name>/", carriers.carrier_profile, name="carrier_profile"),
    path("carriers/<slug:name>/resume/", carriers.carrier_resume, name="carrier_resume"),
    path("municipalities/<slug:code>/dns/", municipalities.municipality_dns, name="municipality_dns"),
    path("maintenance/", maintenance.maintenance_windows, name="maintenance_windows"),
    path("maintenance/new/", maintenance.maintenance_new, name="maintenance_new"),
    path("maintenance/<int:window_id>/", maintenance.maintenance_edit, name="maintenance_edit"),
    path("maintenance/<int:window_id>/cancel/", maintenance.maintenance_cancel, name="maintenance_cancel"),
    path("mailbox/", views.mailbox, name="mailbox"),
    path("mailbox/<str:key>/", views.mailbox_message, name="mailbox_message"),
    path("inquiries/", support.inquiries, name="inquiries"),
    path("inquiries/<int:inquiry_id>/", support.inquiry, name="inquiry"),
]

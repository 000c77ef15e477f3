from django.urls import path

from mimamori.console import broadcasts, receipts, reminders, roster, views

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("schools/", views.schools, name="schools"),
    path("schools/<int:school_id>/", views.school, name="school"),
    path("schools/<int:school_id>/roster/", roster.roster_upload, name="roster_upload"),
    path("schools/<int:school_id>/letters/", roster.letters, name="letters"),
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
    path("mailbox/", views.mailbox, name="mailbox"),
    path("mailbox/<str:key>/", views.mailbox_message, name="mailbox_message"),
]

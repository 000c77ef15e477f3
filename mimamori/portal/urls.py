from django.urls import path

from mimamori.portal import deregistration, gates, history, support, views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login_view, name="login"),
    path("first-login/", views.first_login, name="first_login"),
    path("logout/", views.logout_view, name="logout"),
    path("password-reset/", views.password_reset, name="password_reset"),
    path("password-reset/sent/", views.password_reset_sent, name="password_reset_sent"),
    path("password-reset/<str:token>/", views.password_reset_confirm, name="password_reset_confirm"),
    path("addresses/", views.addresses, name="addresses"),
    path("options/", views.options, name="options"),
    path("history/", history.history, name="history"),
    path("passes/", gates.passes, name="passes"),
    path("deregistration/", deregistration.deregistration_request, name="deregistration"),
    path("deregistration/withdraw/", deregistration.withdraw, name="deregistration_withdraw"),
    path("help/", support.help_page, name="help"),
    path("support/", support.inquiry, name="inquiry"),
    path("support/thanks/", support.inquiry_thanks, name="inquiry_thanks"),
]

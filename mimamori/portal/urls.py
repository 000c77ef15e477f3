from django.urls import path

from mimamori.portal import views

app_name = "portal"
urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.login_view, name="login"),
    path("first-login/", views.first_login, name="first_login"),
    path("logout/", views.logout_view, name="logout"),
    path("addresses/", views.addresses, name="addresses"),
    path("options/", views.options, name="options"),
]

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from mimamori.api.endpoints import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:home", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("portal/", include("mimamori.portal.urls")),
    path("console/", include("mimamori.console.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from mimamori.api.endpoints import api
from mimamori.core import emblem, health
from mimamori.core.health import healthz
from mimamori.portal import confirm, unsubscribe

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="portal:home", permanent=False)),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", healthz, name="healthz"),
    path("healthz/database", health.database, name="healthz_database"),
    # The 受信確認 link in broadcast mails: short, at the root, no login (S5).
    # <path:…>: anything under /c/, slashes and all, gets the one not-found page.
    path("c/<path:token>/", confirm.confirm, name="confirm"),
    # The one-click unsubscribe link of broadcast mails (RFC 8058).
    path("u/<str:token>/", unsubscribe.unsubscribe, name="unsubscribe"),
    # The municipality's emblem (市章), its digest in the URL: cached for a year (core/emblem.py).
    path("emblem/<slug:code>/<str:digest>.png", emblem.emblem, name="emblem"),
    path("portal/", include("mimamori.portal.urls")),
    path("console/", include("mimamori.console.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]

# A lost database answers 503 with its own page (mimamori/core/middleware.py); anything else 500.
handler500 = "mimamori.core.middleware.server_error"
# The other error pages in each site's style, Japanese first (mimamori/core/errors.py).
handler400 = "mimamori.core.errors.bad_request"
handler403 = "mimamori.core.errors.permission_denied"
handler404 = "mimamori.core.errors.page_not_found"

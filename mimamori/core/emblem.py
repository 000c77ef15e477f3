"""The municipality's emblem (市章) as an image: public (a city's emblem is no secret, and the
guardian's confirmation page shows it without a login), with the PNG's digest in the URL, so
it may be cached for a year: a new emblem has a new URL. This is the one dynamic answer that
NoStoreMiddleware leaves cacheable (it keeps a ``public`` Cache-Control a view set itself).
An old digest answers 404, never another image under the old URL.
"""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from mimamori.registry.models import MunicipalityEmblem

ONE_YEAR = 365 * 24 * 60 * 60


@require_safe
def emblem(request: HttpRequest, code: str, digest: str) -> HttpResponse:
    row = MunicipalityEmblem.objects.filter(municipality__code=code, digest=digest).first()
    if row is None:
        raise Http404
    etag = f'"{row.digest}"'
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        response = HttpResponse(status=304)
    else:
        response = HttpResponse(bytes(row.png), content_type="image/png")
    response["ETag"] = etag
    response["Cache-Control"] = f"public, max-age={ONE_YEAR}, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response

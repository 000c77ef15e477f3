"""Response rules for every request: no caching of personal data, and a 503 while the database is away.

NoStoreMiddleware: every console, portal and API page, and every CSV export, carries personal
data, so no browser or proxy may keep a copy (``Cache-Control: no-store, private``, Django's
never-cache headers); static files (under STATIC_URL, served by WhiteNoise) keep their caching,
and so does the municipality's emblem (core/emblem.py), which sets ``Cache-Control: public``.

Database outage: a request that meets a lost or refused database connection (django.db's
OperationalError or InterfaceError) is answered 503 with a Retry-After header: the guardian and
staff pages with a plain Japanese page rendered without the database (no session, no user, no
context processors), the API with ``{"detail": ...}``. Exceptions raised by a view reach
DatabaseOutageMiddleware.process_exception; those raised before the view (the session or user
lookup of a middleware, the maintenance check, the confirmation button) or while a response is
finished (the session saved) reach Django's 500 handler, which is server_error() below
(mimamori/urls.py, handler500), so both end in the same answer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from mimamori.core import errors

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (OperationalError, InterfaceError)
# Seconds a client is asked to wait before trying again while the database is away.
RETRY_AFTER_SECONDS = 30


def _static_prefix() -> str:
    return "/" + settings.STATIC_URL.lstrip("/")


class NoStoreMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.static = _static_prefix()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        # A page that already says no-store (the confirmation page, maintenance) keeps its header;
        # so does one that says public (the emblem, core/emblem.py: no personal data, and its URL
        # changes with the image).
        cache_control = response.get("Cache-Control", "")
        if (
            not request.path.startswith(self.static)
            and "no-store" not in cache_control
            and "public" not in cache_control
        ):
            add_never_cache_headers(response)
        return response


def database_unavailable(request: HttpRequest, error: BaseException) -> HttpResponse:
    """The 503 answer while the database is away; touches neither the database nor the session."""
    logger.warning("database unavailable: %s %s: %s", request.method, request.path, error)
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": _("The service is temporarily unavailable. Please try again in a few minutes.")},
            status=503,
        )
    else:
        # No request in the context: the context processors would look up the user and session.
        response = HttpResponse(render_to_string("core/unavailable.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    add_never_cache_headers(response)
    # Logged above in one line; an outage must not fill the log with a traceback a request.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_ERRORS):
            return database_unavailable(request, exception)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it inside its ``except`` block, so the exception is at hand."""
    error = sys.exc_info()[1]
    if isinstance(error, DATABASE_ERRORS):
        return database_unavailable(request, error)
    return errors.server_error_page(request)

"""The error pages (400, 403, 404, 500) in the style of the site they happen on: the staff
console's under /console/, the guardian site's everywhere else (the portal, the confirmation and
unsubscribe links), JSON under /api/. Japanese, or English in the English UI.

400, 403 and 404 are drawn with the site's own header and menu (a staff member who opened another
school's page still has the console's menu). 500 is drawn from the template alone, without the
request's context: whatever failed (the database, a context processor) must not fail the error
page too. A lost database still answers 503 with core/unavailable.html (middleware.server_error,
handler500, calls server_error_page for anything else).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)


def _site(request: HttpRequest) -> str:
    if request.path.startswith("/api/"):
        return "api"
    return "console" if request.path.startswith("/console/") else "portal"


def _texts(status: int) -> tuple[str, str]:
    if status == 400:
        return _("The request could not be understood"), _(
            "The page could not handle what the browser sent. Please go back and try again."
        )
    if status == 403:
        return _("You cannot open this page"), _(
            "This page is not open to your login, or the form was open too long. "
            "Please go back, reload the page and try again."
        )
    if status == 404:
        return _("Page not found"), _(
            "The page you are looking for does not exist, or is not open to your login. "
            "Please check the address, or start again from the menu."
        )
    return _("Something went wrong"), _(
        "The system could not show this page because of an error. It has been recorded. "
        "Please try again in a few minutes; if it happens again, contact the support desk."
    )


def _error(request: HttpRequest, status: int) -> HttpResponse:
    site = _site(request)
    title, message = _texts(status)
    if site == "api":
        return JsonResponse({"detail": title}, status=status)
    context = {"status": status, "title": title, "message": message}
    if site == "console":
        # What the console's pages add to their context (console/views.py _render).
        from django.conf import settings

        context["devmail_enabled"] = settings.DEVMAIL_ENABLED
    return render(request, f"{site}/error.html", context, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form sent from a page open too long, or with cookies off."""
    logger.warning("CSRF failure: %s %s: %s", request.method, request.path, reason)
    return _error(request, 403)


def server_error_page(request: HttpRequest) -> HttpResponse:
    """The 500 page; handler500 (middleware.server_error) answers a lost database with the 503."""
    site = _site(request)
    title, message = _texts(500)
    if site == "api":
        return JsonResponse({"detail": title}, status=500)
    # No request in the context: the context processors would look up the user and session.
    page = render_to_string(f"{site}/500.html", {"status": 500, "title": title, "message": message})
    return HttpResponse(page, status=500)

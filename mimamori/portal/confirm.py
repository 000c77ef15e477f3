"""The guardian's 受信確認 page (S5): /c/<token>/ from a broadcast mail, without login.

The token is the capability: whoever holds the mail may read it again here and confirm it, so
these pages show nothing beyond what the mail itself says (school, time, subject, body) and
never a child's name or an address. GET (and HEAD) only show; mail security scanners open
every link, so only the POST from the 「確認しました」 button records.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mimamori.broadcasts.models import Delivery
from mimamori.receipts.confirming import Outcome, confirm_link, find_delivery, is_confirmed, is_expired

View = Callable[..., HttpResponse]

# The token sits in the URL: no Referer may carry it to another site, no shared or back-button
# cache may keep the page, and no search engine may list it.
PRIVATE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}


class HttpResponseSeeOther(HttpResponseRedirect):
    status_code = 303


def private_page(view: View) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        for header, value in PRIVATE_HEADERS.items():
            response[header] = value
        return response

    return wrapped


def _context(delivery: Delivery) -> dict[str, Any]:
    broadcast = delivery.broadcast
    return {
        "token": delivery.confirmation_token,
        "broadcast": broadcast,
        "school": delivery.school,  # the sender, as in the mail's From (S2)
        "municipality": delivery.school.municipality,  # its サポート窓口 in the footer
        "sent_at": broadcast.send_requested_at or broadcast.created_at,
        "valid_days": settings.MIMAMORI_CONFIRMATION_DAYS,
    }


# No CSRF token: guardians open this link from carrier mail on phones, where in-app browsers
# and older carrier browsers may drop or refuse the cookie Django's CSRF check needs, and a
# refused confirmation is the worst outcome here. The check would protect nothing: a forged
# POST must name the unguessable token in its URL, and whoever has the token can confirm
# anyway; the POST only sets a read flag, reveals nothing and works without a session.
# X-Frame-Options (middleware) still stops the button being framed elsewhere.
@csrf_exempt
@private_page
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    if request.method == "POST":
        return _confirm(request, token)
    delivery = find_delivery(token)
    if delivery is None:
        # One page for unknown, malformed and tampered tokens: no hint how close a guess was.
        return render(request, "portal/confirm_unknown.html", status=404)
    context = _context(delivery)
    if is_expired(delivery):
        return render(request, "portal/confirm_expired.html", context, status=410)
    confirmed = is_confirmed(delivery)
    if confirmed and request.GET.get("done"):
        return render(request, "portal/confirm_done.html", {**context, "already": False})
    return render(request, "portal/confirm.html", {**context, "confirmed": confirmed})


def _confirmed(request: HttpRequest) -> HttpResponse:
    # Post/redirect/get: reloading the thank-you page must not ask to resend a form.
    response = HttpResponseSeeOther(f"{request.path}?done=1")
    for header, value in PRIVATE_HEADERS.items():
        response[header] = value
    return response


def _confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The 「確認しました」 button. Its usual answer, a redirect, needs nothing but the token;
    the mail is loaded only when there is a page to show."""
    outcome = confirm_link(token)  # committed when it returns
    if outcome is Outcome.CONFIRMED:
        return _confirmed(request)
    delivery = find_delivery(token)
    if delivery is None:
        # One page for unknown, malformed and tampered tokens: no hint how close a guess was.
        return render(request, "portal/confirm_unknown.html", status=404)
    if outcome is None:  # known, so its link has expired
        return render(request, "portal/confirm_expired.html", _context(delivery), status=410)
    return render(request, "portal/confirm_done.html", {**_context(delivery), "already": True})


class ConfirmButtonMiddleware:
    """Answers the 「確認しました」 POST that confirms a mail before the rest of the middleware.

    That POST is what a whole city sends within minutes of an emergency mail, and none of the
    middleware after this one has anything to do for it: it carries no session, login or
    CSRF token (see confirm()), its answer is a redirect without a body in any language, the
    links stay open during maintenance, and it is no static file. Running them and resolving
    the URL cost more CPU than recording the confirmation (docs/performance.md). Anything
    else (a GET, a mail confirmed already, an unknown or expired link) goes on to confirm(),
    which draws the page; confirm_link is idempotent, so asking it twice changes nothing.
    Placed right after SecurityMiddleware, whose headers every answer gets.
    """

    PATH = re.compile(r"/c/([0-9a-f]{40,64})/")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = self.PATH.fullmatch(request.path_info) if request.method == "POST" else None
        if match and confirm_link(match[1]) is Outcome.CONFIRMED:
            return _confirmed(request)
        return self.get_response(request)

"""A form post too large for the site's limits answers 413 with a page saying so.

Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE (RequestDataTooBig) or with more than
DATA_UPLOAD_MAX_NUMBER_FIELDS fields (TooManyFieldsSent) when request.POST is first read, by
CsrfViewMiddleware as a rule, and answers with its generic 400 page in English. This middleware,
just before it, reads the form first and answers such a post itself: 413 and a page in the
user's language. The API (/api/) answers in JSON on its own (its 413 included) and is passed by
untouched.

Whatever the answer, this page's 413, the API's or any response that left the body unread (a
401 to a POST without a token), the middleware then reads and drops what is left of the body
(up to DRAIN bytes). A server that closes a connection with part of the body unread makes the
kernel reset it, and a proxy still sending that body (nginx, deploy/nginx/) then answers 502
instead of passing the response on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

TOO_LARGE = (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# Above nginx's client_max_body_size (deploy/nginx/mimamori.conf), and small enough to read
# at once without harm; a larger body is not read at all.
DRAIN = 8 * 1024 * 1024


class RequestTooLargeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self._answer(request)
        _drop_the_rest(request)
        return response

    def _answer(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and not request.path.startswith("/api/") and _is_form(request):
            try:
                request.POST  # noqa: B018 - parsed now, where its refusal can be answered
            except TOO_LARGE:
                return _too_large(request)
        return self.get_response(request)


def _is_form(request: HttpRequest) -> bool:
    return request.content_type in _FORMS


def _drop_the_rest(request: HttpRequest) -> None:
    """Read the body to its end; cheap for one read already (the stream is at its end, or is
    request.body's copy in memory)."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length != "0" and length.isdigit() and int(length) <= DRAIN:
        with contextlib.suppress(OSError):
            while request.read(64 * 1024):
                pass


def _too_large(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(render_to_string("core/too_large.html", request=request), status=413)
    response["Cache-Control"] = "no-store"
    return response

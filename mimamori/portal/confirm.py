"""The guardian's 受信確認 page (S5): /c/<token>/ from a broadcast mail, without login.

The token is the capability: whoever holds the mail may read it again here and confirm it, so
these pages show nothing beyond what the mail itself says (school, time, subject, body) and
never an address. GET (and HEAD) only show; mail security scanners open every link, so only
the POST from the 「確認しました」 button records.

A 安否確認 broadcast (B1, answer choices) asks for an answer per child instead: the page shows
the message and a plain HTML form, one group of choices per child the mail names, and its POST
records through receipts/answering.py; a later POST changes the answers until answering closes
or the link expires. Here, and only here, the page names the children, exactly as the mail
does (school, grade, class, name): the mail carries those lines already, so the page shows no
more than the mail, and a safety answer given for the wrong child (siblings at one address)
is worse than a name shown again to whoever holds the mail. The form names each child by
registrant id, an internal number that says nothing about the child.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mimamori.broadcasts.mails import child_line
from mimamori.broadcasts.models import Delivery, Recipient
from mimamori.receipts.answering import AnsweringClosed, record_answers
from mimamori.receipts.confirming import Outcome, confirm_link, find_delivery, is_confirmed, is_expired
from mimamori.receipts.models import Receipt

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
    if delivery.broadcast.answers:
        return _answer_page(request, delivery, done=bool(request.GET.get("done")))
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
    """The 「確認しました」 button, or the 「回答する」 button of a 安否確認 form. Its usual
    answer, a redirect, needs nothing but the token and the form; the mail is loaded only when
    there is a page to show."""
    chosen = chosen_answers(request.POST)
    if chosen != {}:
        return _answer(request, token, chosen)
    outcome = confirm_link(token)  # committed when it returns
    if outcome is Outcome.CONFIRMED:
        return _confirmed(request)
    delivery = find_delivery(token)
    if delivery is None:
        # One page for unknown, malformed and tampered tokens: no hint how close a guess was.
        return render(request, "portal/confirm_unknown.html", status=404)
    if outcome is Outcome.ANSWER_NEEDED or delivery.broadcast.answers:
        # A bare confirmation, or the form sent without a choice: nothing recorded.
        return _answer_page(request, delivery, error=_("Please choose an answer for your child."))
    if outcome is None:  # known, so its link has expired
        return render(request, "portal/confirm_expired.html", _context(delivery), status=410)
    return render(request, "portal/confirm_done.html", {**_context(delivery), "already": True})


ANSWER_FIELD = re.compile(r"answer-([0-9]{1,18})")
ANSWER_VALUE = re.compile(r"[0-9]{1,2}")


def chosen_answers(form: Mapping[str, str]) -> dict[int, int] | None:
    """The answers a POST gives: {registrant id: choice index} from its answer-<id> fields;
    {} when it gives none (the bare 「確認しました」 button), None when one is not a number."""
    chosen = {}
    for name, value in form.items():
        if field := ANSWER_FIELD.fullmatch(name):
            if not ANSWER_VALUE.fullmatch(value):
                return None
            chosen[int(field[1])] = int(value)
    return chosen


def _answer(request: HttpRequest, token: str, chosen: dict[int, int] | None) -> HttpResponse:
    """The 「回答する」 button: record, then post/redirect/get to the page listing the answers."""
    error = _("Please choose one of the answers shown.")
    if chosen is not None:
        try:
            answered = record_answers(token, chosen)  # committed when it returns
        except AnsweringClosed:
            answered, error = None, ""  # the page says answering is closed
        except ValueError:
            answered = None
        else:
            if answered is not None and answered.named:
                return _confirmed(request)
            if answered is not None:  # none of the children the form names is in the mail
                error = _("Please choose an answer for your child.")
    delivery = find_delivery(token)
    if delivery is None:
        return render(request, "portal/confirm_unknown.html", status=404)
    if not delivery.broadcast.answers:  # answer fields sent for a bare confirmation
        return _bare_with_fields(request, token)
    return _answer_page(request, delivery, error=error)


def _bare_with_fields(request: HttpRequest, token: str) -> HttpResponse:
    # A form with answer fields sent to a mail that asks none: the fields mean nothing there,
    # and the button still says the mail was read.
    outcome = confirm_link(token)
    if outcome is Outcome.CONFIRMED:
        return _confirmed(request)
    delivery = find_delivery(token)
    if delivery is None:
        return render(request, "portal/confirm_unknown.html", status=404)
    if outcome is None:
        return render(request, "portal/confirm_expired.html", _context(delivery), status=410)
    return render(request, "portal/confirm_done.html", {**_context(delivery), "already": True})


@dataclass(frozen=True)
class ChildAnswer:
    """A child the mail names, as it names it, and the answer recorded for it (None: none yet)."""

    registrant_id: int
    line: str
    answer: int | None
    answer_text: str


def children_of(delivery: Delivery) -> list[ChildAnswer]:
    """The children a mail names, in the order the mail lists them, with their answers."""
    recipients = list(
        Recipient.objects.filter(delivery=delivery)
        .select_related("registrant__school")
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana")
    )
    answers = dict(
        Receipt.objects.filter(
            broadcast_id=delivery.broadcast_id, registrant_id__in=[r.registrant_id for r in recipients]
        ).values_list("registrant_id", "answer")
    )
    choices = delivery.broadcast.answers
    children = []
    for recipient in recipients:
        answer = answers.get(recipient.registrant_id)
        text = choices[answer] if answer is not None and answer < len(choices) else ""
        children.append(ChildAnswer(recipient.registrant_id, child_line(recipient.registrant), answer, text))
    return children


def _answer_page(
    request: HttpRequest, delivery: Delivery, *, done: bool = False, error: str = ""
) -> HttpResponse:
    """The 安否確認 page: the form, the answers recorded (done), or why answering is over."""
    children = children_of(delivery)
    context = {
        **_context(delivery),
        "children": children,
        "choices": list(enumerate(delivery.broadcast.answers)),
        "answered": any(child.answer is not None for child in children),
        "error": error,
    }
    if is_expired(delivery):
        return render(request, "portal/confirm_expired.html", context, status=410)
    if delivery.broadcast.answers_closed_at is not None:
        return render(request, "portal/answers_closed.html", context)
    if done and context["answered"]:
        return render(request, "portal/answers_done.html", context)
    return render(request, "portal/answer.html", context, status=400 if error else 200)


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

    The 「回答する」 POST of a 安否確認 mail is the same storm, so it is answered here too: the
    form body is parsed here (answer-<registrant id>=<choice>) and recorded in one round trip
    (receipts/answering.py); anything unusual (no choice, a wrong one, answering closed) goes
    on to confirm(), which records nothing more and draws the page.
    """

    PATH = re.compile(r"/c/([0-9a-f]{40,64})/")
    FORM = "application/x-www-form-urlencoded"
    SMALL = 2048  # bytes: the answer form of a mail naming several children is a few dozen

    @classmethod
    def posted_answers(cls, request: HttpRequest) -> dict[int, int] | None:
        """chosen_answers() of the POST: nothing read for the bare button's empty body, and the
        answer form's short body parsed directly rather than through Django's form parsing."""
        length = request.META.get("CONTENT_LENGTH") or "0"
        if length == "0":
            return {}
        if request.content_type != cls.FORM or not length.isdigit() or int(length) > cls.SMALL:
            return chosen_answers(request.POST)
        try:
            form = parse_qsl(request.body.decode("latin-1"), max_num_fields=64)
        except ValueError:  # more fields than any answer form has: the view's parser decides
            return None
        return chosen_answers(dict(form))

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = self.PATH.fullmatch(request.path_info) if request.method == "POST" else None
        if match is None:
            return self.get_response(request)
        chosen = self.posted_answers(request)
        if chosen == {}:
            if confirm_link(match[1]) is Outcome.CONFIRMED:
                return _confirmed(request)
        elif chosen is not None:
            try:
                answered = record_answers(match[1], chosen)
            except (AnsweringClosed, ValueError):
                answered = None
            if answered is not None and answered.named:
                return _confirmed(request)
        return self.get_response(request)

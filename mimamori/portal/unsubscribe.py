"""/u/<token>/: a broadcast mail's one-click unsubscribe link (RFC 8058).

GET only shows a page with a button (mail scanners open every link); a POST with
``List-Unsubscribe=One-Click``, from the mail client's 配信停止 or from that button, turns
連絡メールを受信する off for the children the mail names. The page shows what the mail shows
of itself (school, subject), never a child's name or an address.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from mimamori.broadcasts import unsubscribe as one_click
from mimamori.portal.confirm import private_page

ONE_CLICK = "One-Click"


# No CSRF token: the RFC 8058 POST comes from the mail provider's servers, without a session.
# It needs the unguessable token in its URL, and it only turns broadcast mail off, which the
# guardian can turn on again under オプション.
@csrf_exempt
@private_page
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    delivery = one_click.find(token)
    if delivery is None:
        return render(request, "portal/unsubscribe_unknown.html", status=404)
    context = {"broadcast": delivery.broadcast, "school": delivery.school}
    if request.method != "POST":
        return render(request, "portal/unsubscribe.html", context)
    if request.POST.get("List-Unsubscribe") != ONE_CLICK:
        return render(request, "portal/unsubscribe.html", context, status=400)
    one_click.unsubscribe(delivery, request)
    return render(request, "portal/unsubscribe_done.html", context)

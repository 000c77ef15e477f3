"""Console: 到達テスト (B4). Start one for a school (after a confirmation that says how many
addresses will be mailed), and read its results: counts, each tested slot with its mail's
outcome and the server's reply, and the follow-up list, which is the school's
「届かないアドレス」 report narrowed to this test (console/undeliverable.py).

Addresses are masked as on the report; staff phone the household, who knows its address.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from mimamori.console.decorators import staff_required
from mimamori.console.views import _page, _render, _staff
from mimamori.receipts.statistics import mask_address
from mimamori.registry import reachtests
from mimamori.registry.access import get_reach_test, get_school
from mimamori.registry.models import ReachTest

RESULT_LABELS = {
    "sent": gettext_lazy("Delivered"),
    "waiting": gettext_lazy("Waiting"),
    "failed": gettext_lazy("Failed"),
    "suppressed": gettext_lazy("Not sent (address does not receive mail)"),
}


def masked_reply(text: str, email: str) -> str:
    """The server's reply with the address in it masked too (relays quote it: "<x@y>: User unknown")."""
    if not text or not email:
        return text
    lowered, key = text.lower(), email.lower()
    masked, found, start = [], lowered.find(key), 0
    while found >= 0:
        masked.append(text[start:found] + mask_address(email))
        start = found + len(key)
        found = lowered.find(key, start)
    return "".join(masked) + text[start:]


@staff_required
@require_http_methods(["GET", "POST"])
def reach_test_new(request: HttpRequest, school_id: int) -> HttpResponse:
    user = _staff(request)
    school = get_school(user, school_id)
    if request.method == "POST":
        try:
            test = reachtests.start(school, by=user, request=request)
        except reachtests.ReachTestRefused as refused:
            messages.error(request, str(refused))
            return redirect("console:school", school.pk)
        messages.success(request, _("The reach test has started: its mails go out in a few moments."))
        return redirect("console:reach_test", test.pk)
    sample = reachtests.sample(school)
    return _render(
        request,
        "reach_test_new.html",
        {
            "school": school,
            "plan": reachtests.plan(school),
            "sample": sample
            and {
                "subject": sample.subject,
                "to": mask_address(sample.to[0]),
                "sender": sample.from_email,
                "body": sample.body,
            },
        },
    )


@staff_required
@require_GET
def reach_test(request: HttpRequest, reach_test_id: int) -> HttpResponse:
    test: ReachTest = get_reach_test(_staff(request), reach_test_id)
    result = request.GET.get("result", "")
    if result not in reachtests.RESULTS:
        result = ""
    page = _page(request, reachtests.results(test, result))
    rows = []
    for row in page:
        key = _result(row.mail.status if row.mail else "")
        rows.append(
            {
                "slot": row,
                "masked": mask_address(row.email),
                "result": key,
                "label": RESULT_LABELS[key],
                "reply": masked_reply(row.mail.reply, row.email) if row.mail else "",
            }
        )
    return _render(
        request,
        "reach_test.html",
        {
            "test": test,
            "school": test.school,
            "counts": reachtests.counts([test])[test.pk],
            "follow_up": reachtests.follow_up(test).count(),
            "result": result,
            "results": RESULT_LABELS,
            "page": page,
            "rows": rows,
        },
    )


def _result(status: str) -> str:
    """The RESULTS key of a mail's status ("" for a slot that was not mailed)."""
    if not status:
        return "suppressed"
    return status if status in ("sent", "failed") else "waiting"

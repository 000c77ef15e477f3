"""Console: a school's 「届かないアドレス」 (P5), on screen and as CSV, for staff to ask the
households to update them before the next emergency.

Addresses are masked as on the unconfirmed list (P2): staff phone the household, who knows
its own address; so are they where the server's reply quotes them.

With ``?reach_test=<id>`` the report is that 到達テスト's follow-up list: the addresses it found
dead that are still undeliverable (registry/reachtests.py ``follow_up``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from mimamori.audit import log as audit
from mimamori.console.csv_export import csv_cell, csv_writer
from mimamori.console.decorators import View, staff_required
from mimamori.console.reachtests import masked_reply
from mimamori.console.views import _render, _staff
from mimamori.receipts.statistics import mask_address
from mimamori.registry import reachtests
from mimamori.registry.access import get_reach_test, get_school
from mimamori.registry.health import undeliverable as undeliverable_addresses
from mimamori.registry.models import ReachTest, School

CSV_HEADER = [
    "学年",
    "組",
    "児童氏名",
    "ふりがな",
    "アドレス",
    "メールアドレス",
    "状態",
    "最後の失敗",
    "サーバーの応答",
]


def _report(request: HttpRequest, school_id: int) -> tuple[School, ReachTest | None, QuerySet[Any]]:
    """The school, the 到達テスト the report is narrowed to (if any), and the addresses."""
    user = _staff(request)
    school = get_school(user, school_id)
    wanted = request.GET.get("reach_test")
    if wanted is None:
        return school, None, undeliverable_addresses(school)
    if not wanted.isdigit():
        raise Http404
    test = get_reach_test(user, int(wanted))
    if test.school_id != school.pk:
        raise Http404
    return school, test, reachtests.follow_up(test)


@staff_required
@require_GET
def undeliverable(request: HttpRequest, school_id: int) -> HttpResponse:
    school, test, addresses = _report(request, school_id)
    rows = [
        {
            "address": address,
            "masked": mask_address(address.email),
            "failure": masked_reply(address.failure or "", address.email),
        }
        for address in addresses
    ]
    return _render(request, "undeliverable.html", {"school": school, "reach_test": test, "rows": rows})


def _undeliverable_csv(request: HttpRequest, school_id: int) -> StreamingHttpResponse:
    school, test, addresses = _report(request, school_id)

    def lines() -> Iterator[str]:
        # Japanese Excel reads UTF-8 only with a BOM, and expects CRLF line ends.
        writer = csv_writer()
        yield "\ufeff" + writer.writerow(CSV_HEADER)
        for address in addresses.iterator(chunk_size=2000):
            registrant = address.registrant
            failed_at = (
                timezone.localtime(address.failed_at).strftime("%Y-%m-%d %H:%M") if address.failed_at else ""
            )
            yield writer.writerow(
                [
                    csv_cell(value)
                    for value in (
                        registrant.grade,
                        registrant.class_name,
                        registrant.child_name,
                        registrant.child_name_kana,
                        address.slot,
                        mask_address(address.email),
                        address.get_status_display(),
                        failed_at,
                        masked_reply(address.failure or "", address.email),
                    )
                ]
            )

    details: dict[str, Any] = {"reach_test": test.pk} if test else {}
    audit.record(
        "export.undeliverable_csv",
        actor=request.user,
        target=f"school {school.pk}",
        municipality=school.municipality,
        request=request,
        **details,
    )
    name = f"undeliverable-{school.pk}" + (f"-reachtest-{test.pk}" if test else "")
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


undeliverable_csv = staff_required(cast(View, require_GET(_undeliverable_csv)))

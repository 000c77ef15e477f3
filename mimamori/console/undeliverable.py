"""Console: a school's 「届かないアドレス」 (P5), on screen and as CSV, for staff to ask the
households to update them before the next emergency.

Addresses are masked as on the unconfirmed list (P2): staff phone the household, who knows
its own address.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import cast

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from mimamori.audit import log as audit
from mimamori.console.csv_export import CsvLine, csv_cell
from mimamori.console.decorators import View, staff_required
from mimamori.console.views import _render, _staff
from mimamori.receipts.statistics import mask_address
from mimamori.registry.access import get_school
from mimamori.registry.health import undeliverable as undeliverable_addresses

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


@staff_required
@require_GET
def undeliverable(request: HttpRequest, school_id: int) -> HttpResponse:
    school = get_school(_staff(request), school_id)
    rows = [
        {"address": address, "masked": mask_address(address.email)}
        for address in undeliverable_addresses(school)
    ]
    return _render(request, "undeliverable.html", {"school": school, "rows": rows})


def _undeliverable_csv(request: HttpRequest, school_id: int) -> StreamingHttpResponse:
    school = get_school(_staff(request), school_id)

    def lines() -> Iterator[str]:
        # Japanese Excel reads UTF-8 only with a BOM, and expects CRLF line ends.
        writer = csv.writer(CsvLine(), lineterminator="\r\n")
        yield "\ufeff" + writer.writerow(CSV_HEADER)
        for address in undeliverable_addresses(school).iterator(chunk_size=2000):
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
                        address.failure,
                    )
                ]
            )

    audit.record(
        "export.undeliverable_csv",
        actor=request.user,
        target=f"school {school.pk}",
        municipality=school.municipality,
        request=request,
    )
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="undeliverable-{school.pk}.csv"'
    return response


undeliverable_csv = staff_required(cast(View, require_GET(_undeliverable_csv)))

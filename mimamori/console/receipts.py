"""Console pages for read confirmations: the statistics with their live curve (S15), and the
unconfirmed registrants on screen, in print and as CSV for Japanese Excel (P2).

The broadcast is fetched through accounts.get_broadcast, and every count or row is
limited to the schools of accounts.schools_for; the numbers come from
mimamori.receipts.statistics, which reads counters, never deliveries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast

from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import formats, timezone
from django.views.decorators.http import require_GET

from mimamori.audit import log as audit
from mimamori.broadcasts import targeting
from mimamori.broadcasts.access import get_broadcast
from mimamori.broadcasts.models import Broadcast
from mimamori.console.csv_export import csv_cell, csv_writer
from mimamori.console.decorators import View, staff_required
from mimamori.console.views import _render, _staff
from mimamori.receipts import statistics
from mimamori.registry.access import schools_for
from mimamori.registry.models import School

UNCONFIRMED_PAGE_SIZE = 100
POLL_SECONDS = 2

# Japanese whatever the page language: the file is for Japanese Excel, and the names follow the
# roster import's columns. The address columns are named apart from the import's メールアドレス1…
# so that a masked file fed back as a roster is refused rather than read as addresses.
CSV_HEADER = [
    "学校",
    "学年",
    "組",
    "児童氏名",
    "ふりがな",
    "メールアドレス1（一部伏せ字）",
    "メールアドレス2（一部伏せ字）",
]

# The chart's drawing area, in SVG user units (scaled to the page width by the viewBox).
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 32
FONT_SIZE = 15
# The least distance between two labels of the y-axis, in the same units: they never overlap.
MIN_TICK_GAP = FONT_SIZE * 1.4


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def _scope(request: HttpRequest, broadcast_id: int) -> tuple[Broadcast, QuerySet[School]]:
    user = _staff(request)
    return get_broadcast(user, broadcast_id), schools_for(user)


def _opened(request: HttpRequest) -> int | None:
    """The school whose grades and classes the page shows (?school=), if one was opened."""
    value = request.GET.get("school", "")
    return int(value) if value.isdigit() else None


def _rows(stats: statistics.Statistics) -> list[dict[str, Any]]:
    """The breakdown as one flat list, keyed for live updates: every school, and the grades and
    classes of the school opened (or of the only one). A city has a thousand classes and more;
    a page listing them all took longer to draw than the two seconds between its updates."""
    rows: list[dict[str, Any]] = []

    def row(key: str, kind: str, tally: statistics.Tally, **names: Any) -> None:
        rows.append(
            {
                "key": key,
                "kind": kind,
                "registrants": tally.registrants,
                "confirmed": tally.confirmed,
                "rate": percent(tally.rate),
                **names,
            }
        )

    for school in stats.schools:
        assert school.school is not None
        school_key = f"s{school.school.pk}"
        opened = bool(school.grades)
        row(
            school_key, "school", school, school=school.school.name, school_id=school.school.pk, opened=opened
        )
        for grade in school.grades:
            row(f"{school_key}-g{grade.grade}", "grade", grade, grade=grade.grade)
            for klass in grade.classes:
                row(f"c{klass.group_id}", "class", klass, grade=grade.grade, class_name=klass.class_name)
    return rows


def ticks(registrants: int, top: int) -> list[tuple[int, str]]:
    """The y-axis: (count, label) at 0, 25, 50, 75 and 100 % of the axis, moved to whole
    registrants and labelled with what that count is of the audience, leaving out any that would
    fall on or too near the one below (with 1 registrant 0 %, 25 % and 50 % were once printed
    on one line). The axis's top is always labelled."""
    plot_h = HEIGHT - TOP - BOTTOM
    chosen: list[int] = []
    for share in range(5):
        count = round(top * share / 4)
        if chosen and (count - chosen[-1]) * plot_h / top < MIN_TICK_GAP:
            if share < 4:
                continue
            if len(chosen) > 1:
                chosen.pop()  # the top goes in rather than the tick just below it
            elif count == chosen[-1]:
                continue
        chosen.append(count)

    def label(count: int) -> str:
        return f"{round(100 * count / registrants)}%" if registrants else ""

    return [(count, label(count)) for count in chosen]


def _chart(timeline: statistics.Timeline, registrants: int) -> str:
    """The cumulative confirmations as a step line, drawn on the server (no JS library, no CDN)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    seconds = max((timeline.end - timeline.start).total_seconds(), 60.0)
    top = max(registrants, timeline.points[-1].confirmed if timeline.points else 0, 1)

    def x(at: datetime) -> float:
        return round(LEFT + plot_w * (at - timeline.start).total_seconds() / seconds, 1)

    def y(count: int) -> float:
        return round(TOP + plot_h * (1 - count / top), 1)

    line = [(x(timeline.start), y(0))]
    last = 0
    for point in timeline.points:
        line += [(x(point.at), y(last)), (x(point.at), y(point.confirmed))]
        last = point.confirmed
    line.append((x(timeline.end), y(last)))
    grid = [{"y": y(count), "label": label} for count, label in ticks(registrants, top)]

    def clock(at: datetime) -> str:
        return formats.date_format(timezone.localtime(at), "n/j H:i")

    return render_to_string(
        "console/receipts_chart.html",
        {
            "width": WIDTH,
            "height": HEIGHT,
            "font_size": FONT_SIZE,
            "axis_top": grid[-1]["y"],
            "left": LEFT,
            "right": WIDTH - RIGHT,
            "bottom": HEIGHT - BOTTOM,
            "label_y": HEIGHT - 8,
            "grid": grid,
            "points": " ".join(f"{px},{py}" for px, py in line),
            "start": clock(timeline.start),
            "end": clock(timeline.end),
            "confirmed": last,
            "registrants": registrants,
        },
    )


def _numbers(broadcast: Broadcast, schools: QuerySet[School], opened: int | None) -> dict[str, Any]:
    stats = statistics.statistics(broadcast, schools, opened)
    return {
        "registrants": stats.registrants,
        "confirmed": stats.confirmed,
        # Never below zero, even in the second or so before the fan-out has counted the classes.
        "unconfirmed": max(stats.registrants - stats.confirmed, 0),
        "rate": percent(stats.rate),
        "rows": _rows(stats),
        "chart": _chart(statistics.timeline(broadcast, schools), stats.registrants),
    }


@staff_required
@require_GET
def broadcast_receipts(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    numbers = _numbers(broadcast, schools, _opened(request))
    context = {"broadcast": broadcast, "poll_seconds": POLL_SECONDS, **numbers}
    return _render(request, "receipts.html", context)


@staff_required
@require_GET
def broadcast_receipts_data(request: HttpRequest, broadcast_id: int) -> JsonResponse:
    broadcast, schools = _scope(request, broadcast_id)
    numbers = _numbers(broadcast, schools, _opened(request))
    numbers["rows"] = [
        {
            "key": row["key"],
            "registrants": row["registrants"],
            "confirmed": row["confirmed"],
            "rate": row["rate"],
        }
        for row in numbers["rows"]
    ]
    return JsonResponse(numbers)


def _masked(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {
            **row,
            "address1": statistics.mask_address(row["address1"]),
            "address2": statistics.mask_address(row["address2"]),
        }


@staff_required
@require_GET
def broadcast_unconfirmed(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    page = Paginator(statistics.unconfirmed(broadcast, schools), UNCONFIRMED_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    # P2 says slot addresses are "masked as policy says": staff phone the households, so they
    # need the child and the class, not addresses a printout or a forwarded file could leak.
    rows = list(page.object_list)
    addresses = statistics.slot_addresses([row["registrant_id"] for row in rows])
    for row in rows:
        row["address1"] = addresses[row["registrant_id"]].get(1)
        row["address2"] = addresses[row["registrant_id"]].get(2)
    return _render(
        request,
        "unconfirmed.html",
        {"broadcast": broadcast, "page": page, "rows": list(_masked(rows))},
    )


def _unconfirmed_csv(request: HttpRequest, broadcast_id: int) -> StreamingHttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    rows = statistics.with_addresses(statistics.unconfirmed(broadcast, schools))

    def lines() -> Iterator[str]:
        # Japanese Excel reads UTF-8 only with a BOM, and expects CRLF line ends.
        writer = csv_writer()
        yield "\ufeff" + writer.writerow(CSV_HEADER)
        for row in _masked(rows.iterator(chunk_size=2000)):
            yield writer.writerow(
                [
                    csv_cell(row[name])
                    for name in (
                        "school_name",
                        "grade",
                        "class_name",
                        "child_name",
                        "child_name_kana",
                        "address1",
                        "address2",
                    )
                ]
            )

    audit.record(
        "export.unconfirmed_csv",
        actor=request.user,
        target=f"broadcast {broadcast.pk}",
        municipality=targeting.broadcast_municipality(broadcast),
        request=request,
    )
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="unconfirmed-{broadcast.pk}.csv"'
    return response


# cast: a streaming response is no HttpResponse, yet passes through staff_required unchanged.
broadcast_unconfirmed_csv = staff_required(cast(View, require_GET(_unconfirmed_csv)))

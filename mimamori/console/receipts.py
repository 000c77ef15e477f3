"""Console pages for read confirmations: the statistics with their live curve (S15), and the
unconfirmed registrants on screen, in print and as CSV for Japanese Excel (P2). For a broadcast
with answer choices (安否確認, B1) the same pages carry the tally per answer, the unconfirmed are
those who have not answered, and a list (and CSV) per answer says who chose it.

The broadcast is fetched through accounts.get_broadcast, and every count or row is
limited to the schools of accounts.schools_for; the numbers come from
mimamori.receipts.statistics, which reads counters, never deliveries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, cast

from django.contrib import messages as flash
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from mimamori.audit import log as audit
from mimamori.broadcasts import targeting
from mimamori.broadcasts.access import get_broadcast
from mimamori.broadcasts.models import Broadcast
from mimamori.console.csv_export import csv_cell, csv_writer
from mimamori.console.decorators import View, staff_required
from mimamori.console.views import _render, _staff
from mimamori.receipts import closing, statistics
from mimamori.registry.access import schools_for
from mimamori.registry.models import School

UNCONFIRMED_PAGE_SIZE = 100
# The names answer_cells gives its cells.
ANSWER_CELL = re.compile(r"^(a\d+|unanswered)(_share)?$")
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
# The row fields under CSV_HEADER's columns.
CSV_FIELDS = ("school_name", "grade", "class_name", "child_name", "child_name_kana", "address1", "address2")


def _csv_cells(row: dict[str, Any]) -> list[str]:
    return [csv_cell(row[name]) for name in CSV_FIELDS]


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


def answer_cells(tally: statistics.Tally, choices: int) -> dict[str, Any]:
    """The tally's cells per answer, keyed as the page's data-col / data-total attributes:
    a0 … a5 (registrants), a0_share … (of those reached) and `unanswered`."""
    if not choices:
        return {}
    cells: dict[str, Any] = {"unanswered": tally.unanswered}
    cells["unanswered_share"] = percent(statistics.rate(tally.unanswered, tally.registrants))
    for index in range(choices):
        count = tally.answers.get(index, 0)
        cells[f"a{index}"] = count
        cells[f"a{index}_share"] = percent(statistics.rate(count, tally.registrants))
    return cells


def _rows(stats: statistics.Statistics, choices: int = 0) -> list[dict[str, Any]]:
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
                **answer_cells(tally, choices),
                "answer_cells": [
                    {"name": f"a{index}", "value": tally.answers.get(index, 0)} for index in range(choices)
                ],
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
    choices = len(broadcast.answers)
    return {
        "registrants": stats.registrants,
        "confirmed": stats.confirmed,
        # Never below zero, even in the second or so before the fan-out has counted the classes.
        "unconfirmed": stats.unanswered,
        "rate": percent(stats.rate),
        **answer_cells(stats, choices),
        "rows": _rows(stats, choices),
        "chart": _chart(statistics.timeline(broadcast, schools), stats.registrants),
    }


@staff_required
@require_GET
def broadcast_receipts(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    numbers = _numbers(broadcast, schools, _opened(request))
    context = {
        "broadcast": broadcast,
        "poll_seconds": POLL_SECONDS,
        "choices": _choices(broadcast, numbers),
        "can_close": closing.closable(broadcast),
        **numbers,
    }
    return _render(request, "receipts.html", context)


def _choices(broadcast: Broadcast, numbers: dict[str, Any]) -> list[dict[str, Any]]:
    """Each answer choice with its index and its total cells, for the template."""
    return [
        {
            "index": index,
            "text": choice,
            "count": numbers[f"a{index}"],
            "share": numbers[f"a{index}_share"],
        }
        for index, choice in enumerate(broadcast.answers)
    ]


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
            **{name: value for name, value in row.items() if ANSWER_CELL.match(name)},
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
    rows = _with_slot_addresses(page)
    return _render(
        request,
        "unconfirmed.html",
        {"broadcast": broadcast, "page": page, "rows": list(_masked(rows))},
    )


def _with_slot_addresses(page: Any) -> list[dict[str, Any]]:
    """A page of a registrant list with their current slot 1 and 2 addresses (one query), for
    _masked: P2 says slot addresses are "masked as policy says": staff phone the households, so
    they need the child and the class, not addresses a printout or a forwarded file could leak."""
    rows = list(page.object_list)
    addresses = statistics.slot_addresses([row["registrant_id"] for row in rows])
    for row in rows:
        row["address1"] = addresses[row["registrant_id"]].get(1)
        row["address2"] = addresses[row["registrant_id"]].get(2)
    return rows


def _choice(broadcast: Broadcast, answer: int) -> str:
    """The text of answer ``answer`` (its index); 404 for a broadcast without it."""
    if not 0 <= answer < len(broadcast.answers):
        raise Http404
    return str(broadcast.answers[answer])


@staff_required
@require_GET
def broadcast_answered(request: HttpRequest, broadcast_id: int, answer: int) -> HttpResponse:
    """Who chose one answer (e.g. everyone who chose 支援が必要です): masked and paged as the
    unconfirmed list is, for staff to phone or visit the households."""
    broadcast, schools = _scope(request, broadcast_id)
    choice = _choice(broadcast, answer)
    page = Paginator(statistics.answered(broadcast, schools, answer), UNCONFIRMED_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    rows = _with_slot_addresses(page)
    return _render(
        request,
        "answered.html",
        {
            "broadcast": broadcast,
            "answer": answer,
            "choice": choice,
            "page": page,
            "rows": list(_masked(rows)),
        },
    )


def _answered_csv(request: HttpRequest, broadcast_id: int, answer: int) -> StreamingHttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    choice = _choice(broadcast, answer)
    rows = statistics.with_addresses(statistics.answered(broadcast, schools, answer))

    def lines() -> Iterator[str]:
        writer = csv_writer()
        yield "\ufeff" + writer.writerow([*CSV_HEADER, "回答", "回答日時"])
        for row in _masked(rows.iterator(chunk_size=2000)):
            at = row["answered_at"]
            yield writer.writerow(
                [
                    *_csv_cells(row),
                    csv_cell(choice),
                    formats.date_format(timezone.localtime(at), "Y-m-d H:i:s") if at else "",
                ]
            )

    audit.record(
        "export.answers_csv",
        actor=request.user,
        target=f"broadcast {broadcast.pk}",
        municipality=targeting.broadcast_municipality(broadcast),
        request=request,
        answer=choice,
    )
    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="answer-{broadcast.pk}-{answer + 1}.csv"'
    return response


broadcast_answered_csv = staff_required(cast(View, require_GET(_answered_csv)))


def _unconfirmed_csv(request: HttpRequest, broadcast_id: int) -> StreamingHttpResponse:
    broadcast, schools = _scope(request, broadcast_id)
    rows = statistics.with_addresses(statistics.unconfirmed(broadcast, schools))

    def lines() -> Iterator[str]:
        # Japanese Excel reads UTF-8 only with a BOM, and expects CRLF line ends.
        writer = csv_writer()
        yield "\ufeff" + writer.writerow(CSV_HEADER)
        for row in _masked(rows.iterator(chunk_size=2000)):
            yield writer.writerow(_csv_cells(row))

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


@staff_required
@require_http_methods(["GET", "POST"])
def broadcast_close_answers(request: HttpRequest, broadcast_id: int) -> HttpResponse:
    """「回答を締め切る」: a page that asks first (GET), then the POST closes answering. Any staff
    member who reaches the broadcast (who may send it and remind) may close it."""
    broadcast, schools = _scope(request, broadcast_id)
    if not closing.closable(broadcast):
        if broadcast.answers_closed_at is not None:
            flash.info(request, _("Answering is already closed."))
        else:
            flash.info(request, _("Answering can be closed once the broadcast has been sent."))
        return redirect("console:broadcast_receipts", broadcast_id=broadcast.pk)
    if request.method == "POST":
        if closing.close_answering(broadcast, by=_staff(request), request=request):
            flash.success(
                request, _("Answering is closed. Guardians can no longer answer or change answers.")
            )
        else:
            flash.info(request, _("Answering is already closed."))
        return redirect("console:broadcast_receipts", broadcast_id=broadcast.pk)
    numbers = _numbers(broadcast, schools, None)
    return _render(
        request,
        "answers_close.html",
        {"broadcast": broadcast, "choices": _choices(broadcast, numbers), **numbers},
    )

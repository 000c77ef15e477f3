"""What staff see of confirmations (S15, P2, API): counts, breakdown, curve, the unconfirmed
on screen and as CSV for Japanese Excel, the API's counts and receipts; scope kept."""

from __future__ import annotations

import csv
import io
import itertools
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from pytest_django import DjangoAssertNumQueries

import mimamori
from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.confirming import record_confirmation
from mimamori.receipts.models import Receipt
from mimamori.receipts.statistics import mask_address
from mimamori.registry.models import Registrant, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks
from tests.test_api import Api

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"
BOM = "\ufeff"


@dataclass
class Sent:
    school: School
    staff: User
    broadcast: Broadcast
    children: dict[str, Registrant]
    confirmed: set[int]

    @property
    def unconfirmed(self) -> set[int]:
        return {r.pk for r in self.children.values()} - self.confirmed


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


def confirm(broadcast: Broadcast, address: str, minutes_after: int) -> None:
    delivery = Delivery.objects.get(broadcast=broadcast, email__iexact=address)
    record_confirmation(delivery)
    at = (broadcast.send_requested_at or timezone.now()) + timedelta(minutes=minutes_after)
    Receipt.objects.filter(delivery=delivery).update(confirmed_at=at)


@pytest.fixture
def sent(smtp_sink: Sink) -> Sent:
    school = make_school(make_municipality("kita"), name="北小学校", local="kita-es")
    children = {
        "あおい": make_registrant(school, ["aoi.mama@docomo.ne.jp", "aoi.papa@ezweb.ne.jp"], class_name="1"),
        "いつき": make_registrant(school, ["itsuki@au.com"], class_name="1"),
        "うみ": make_registrant(
            school, ["umi.home@softbank.ne.jp", "umi.work@i.softbank.jp"], class_name="1"
        ),
        "えま": make_registrant(school, ["ema@docomo.ne.jp"], class_name="2"),
        "おと": make_registrant(school, ["oto@ezweb.ne.jp"], class_name="2"),
        "かい": make_registrant(school, ["kai=1@docomo.ne.jp"], class_name="2"),
    }
    for kana, child in children.items():
        Registrant.objects.filter(pk=child.pk).update(child_name_kana=kana, child_name=f"見守 {kana}")
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="注意してください。",
        scope=resolve_scope(staff),
        request_confirmation=True,
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    broadcast.refresh_from_db()
    # Class 1: あおい through slot 2, うみ through slot 1 and then slot 2 (counted once); class 2: えま.
    confirm(broadcast, "aoi.papa@ezweb.ne.jp", 1)
    confirm(broadcast, "umi.home@softbank.ne.jp", 3)
    confirm(broadcast, "umi.work@i.softbank.jp", 4)
    confirm(broadcast, "ema@docomo.ne.jp", 3)
    confirmed = {children[k].pk for k in ("あおい", "うみ", "えま")}
    return Sent(school, staff, broadcast, children, confirmed)


def test_statistics_page_counts_rate_breakdown_and_curve(sent: Sent) -> None:
    client = signed_in(sent.staff)
    detail = client.get(reverse("console:broadcast", args=[sent.broadcast.pk])).content.decode()
    assert "受信確認の状況" in detail
    page = client.get(reverse("console:broadcast_receipts", args=[sent.broadcast.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert re.search(r'data-total="registrants">6<', html)
    assert re.search(r'data-total="confirmed">3<', html)
    assert re.search(r'data-total="rate">50.0%<', html)
    assert re.search(r'data-total="unconfirmed">3<', html)
    rows = dict(re.findall(r'data-row="([^"]+)">(.*?)</tr>', html, re.S))
    cells = {key: re.findall(r'data-col="\w+">([^<]*)<', row) for key, row in rows.items()}
    assert cells[f"s{sent.school.pk}"] == ["6", "3", "50.0%"]
    assert sorted(v for k, v in cells.items() if k.startswith("c")) == [
        ["3", "1", "33.3%"],
        ["3", "2", "66.7%"],
    ]
    assert "北小学校" in html
    # The curve: a step line from 0 up to 3 confirmations, drawn in inline SVG.
    svg = re.search(r"<svg.*?</svg>", html, re.S)
    assert svg, "an inline SVG chart"
    assert "3 / 6" in svg.group(0) or "3" in svg.group(0)
    points = re.search(r'class="confirmed-line" points="([^"]+)"', svg.group(0))
    assert points
    heights = [float(p.split(",")[1]) for p in points.group(1).split()]
    assert heights == sorted(heights, reverse=True), "cumulative: the line never goes down"
    assert len(set(heights)) == 3, "0, then 1 at minute 1, then 3 at minute 3 (slot 2 of うみ adds nothing)"
    assert '<meta http-equiv="refresh" content="10">' in html


def test_the_json_endpoint_matches_the_page(sent: Sent) -> None:
    client = signed_in(sent.staff)
    data = client.get(reverse("console:broadcast_receipts_data", args=[sent.broadcast.pk])).json()
    assert (data["registrants"], data["confirmed"], data["unconfirmed"], data["rate"]) == (6, 3, 3, "50.0%")
    by_key = {row["key"]: row for row in data["rows"]}
    assert by_key[f"s{sent.school.pk}"]["confirmed"] == 3
    assert sorted((r["confirmed"], r["rate"]) for k, r in by_key.items() if k.startswith("c")) == [
        (1, "33.3%"),
        (2, "66.7%"),
    ]
    assert data["chart"].startswith("<svg")
    record_confirmation(Delivery.objects.get(broadcast=sent.broadcast, email="oto@ezweb.ne.jp"))
    again = client.get(reverse("console:broadcast_receipts_data", args=[sent.broadcast.pk])).json()
    assert (again["confirmed"], again["rate"]) == (4, "66.7%")


def test_unconfirmed_list_and_csv_are_exactly_the_unconfirmed(sent: Sent) -> None:
    client = signed_in(sent.staff)
    page = client.get(reverse("console:broadcast_unconfirmed", args=[sent.broadcast.pk]))
    html = page.content.decode()
    on_screen = {int(pk) for pk in re.findall(r'data-registrant="(\d+)"', html)}
    assert on_screen == sent.unconfirmed
    assert "見守 いつき" in html
    assert "見守 あおい" not in html
    assert "it***@au.com" in html  # masked (P2)
    assert "itsuki@au.com" not in html
    # Printed without the menus: the page's class and the site stylesheet's print rules (the
    # Content-Security-Policy allows no inline style).
    assert 'class="print-list"' in html
    assert "mimamori/site.css" in html
    stylesheet = (Path(mimamori.__file__).parent / "core/static/mimamori/site.css").read_text()
    assert re.search(r"@media print \{\s*\.print-list", stylesheet)

    response = client.get(reverse("console:broadcast_unconfirmed_csv", args=[sent.broadcast.pk]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response["Content-Disposition"]
    raw = response.getvalue().decode("utf-8")
    assert raw.startswith(BOM)
    assert raw.endswith("\r\n")
    assert "\n" not in raw.replace("\r\n", "")
    lines = list(csv.reader(io.StringIO(raw[len(BOM) :], newline="")))
    assert lines[0][:5] == ["学校", "学年", "組", "児童氏名", "ふりがな"]
    assert lines[0][5].startswith("メールアドレス1")
    assert [line[4] for line in lines[1:]] == ["いつき", "おと", "かい"]
    assert lines[1] == ["北小学校", "3", "1", "見守 いつき", "いつき", "it***@au.com", ""]
    assert lines[3][5] == "ka***@docomo.ne.jp"
    names = {line[3] for line in lines[1:]}
    assert names == {c.child_name for c in Registrant.objects.filter(pk__in=sent.unconfirmed)}


def test_mask_address_keeps_only_a_hint() -> None:
    assert mask_address("taro.yamada@docomo.ne.jp") == "ta***@docomo.ne.jp"
    assert mask_address("abc@au.com") == "a***@au.com"
    assert mask_address("") == ""
    assert mask_address(None) == ""


def test_staff_of_another_school_get_404_everywhere(sent: Sent) -> None:
    other_city = make_municipality("minami")
    outsiders = [
        make_staff(Role.SCHOOL, school=make_school(sent.school.municipality)),
        make_staff(Role.MUNICIPALITY, municipality=other_city),
    ]
    names = [
        "broadcast_receipts",
        "broadcast_receipts_data",
        "broadcast_unconfirmed",
        "broadcast_unconfirmed_csv",
    ]
    for outsider in outsiders:
        client = signed_in(outsider)
        for name in names:
            response = client.get(reverse(f"console:{name}", args=[sent.broadcast.pk]))
            assert response.status_code == 404, (name, outsider.role)
        api = Api(outsider)
        assert api.get(f"/broadcasts/{sent.broadcast.pk}").status_code == 404
        assert api.get(f"/broadcasts/{sent.broadcast.pk}/receipts").status_code == 404
    municipality = signed_in(make_staff(Role.MUNICIPALITY, municipality=sent.school.municipality))
    assert (
        municipality.get(reverse("console:broadcast_receipts", args=[sent.broadcast.pk])).status_code == 200
    )


def test_api_counts_confirmed_and_lists_receipts(sent: Sent) -> None:
    api = Api(sent.staff)
    found = api.get(f"/broadcasts/{sent.broadcast.pk}").json()
    assert found["counts"]["confirmed"] == 3
    assert found["counts"]["registrants"] == 6
    listed = api.get(f"/broadcasts/{sent.broadcast.pk}/receipts").json()
    assert listed["count"] == 6
    items = listed["items"]
    assert {i["registrant"] for i in items} == {c.pk for c in sent.children.values()}
    assert {i["registrant"] for i in items if i["confirmed_at"]} == sent.confirmed
    assert all(i["school"] == sent.school.pk and i["grade"] == 3 for i in items)
    assert [i["class_name"] for i in items] == ["1", "1", "1", "2", "2", "2"]
    assert [i["registrant"] for i in items[:3]] == [sent.children[k].pk for k in ("あおい", "いつき", "うみ")]
    umi = next(i for i in items if i["registrant"] == sent.children["うみ"].pk)
    first = Receipt.objects.get(registrant=sent.children["うみ"]).confirmed_at
    assert umi["confirmed_at"] == timezone.localtime(first).isoformat()  # the first confirmation counts
    page = api.get(f"/broadcasts/{sent.broadcast.pk}/receipts?limit=2&offset=4").json()
    assert [i["registrant"] for i in page["items"]] == [i["registrant"] for i in items[4:6]]


def test_query_counts_do_not_grow_with_the_audience(
    sent: Sent, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    client = signed_in(sent.staff)
    urls = [
        reverse("console:broadcast_receipts", args=[sent.broadcast.pk]),
        reverse("console:broadcast_receipts_data", args=[sent.broadcast.pk]),
        reverse("console:broadcast_unconfirmed", args=[sent.broadcast.pk]),
    ]
    # A constant per page, whatever the audience: the statistics' own queries, and the header's
    # (the staff member's school, its city and the city's emblem).
    for url in urls:
        with django_assert_max_num_queries(11):
            assert client.get(url).status_code == 200


def test_a_city_sees_every_school_and_opens_one_for_its_grades_and_classes(smtp_sink: Sink) -> None:
    city = make_municipality("minami")
    north = make_school(city, name="北小学校", local="kita")
    south = make_school(city, name="南小学校", local="minami")
    for school, grade in ((north, 1), (north, 2), (south, 3)):
        make_registrant(school, [f"g{grade}@{school.sender_local_part}.docomo.ne.jp"], grade=grade)
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    broadcast = sending.compose(
        staff, subject="s", body="b", scope=resolve_scope(staff), request_confirmation=True
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    client = signed_in(staff)
    url = reverse("console:broadcast_receipts", args=[broadcast.pk])

    def kinds(html: str) -> list[str]:
        return re.findall(r'<tr class="(\w+)" data-row', html)

    assert kinds(client.get(url).content.decode()) == ["school", "school"]
    opened = client.get(f"{url}?school={north.pk}").content.decode()
    assert kinds(opened) == ["school", "grade", "class", "grade", "class", "school"]
    assert f'href="?school={south.pk}#s{south.pk}"' in opened
    data = client.get(reverse("console:broadcast_receipts_data", args=[broadcast.pk]) + f"?school={south.pk}")
    assert [row["key"] for row in data.json()["rows"]][:2] == [f"s{north.pk}", f"s{south.pk}"]
    assert len(data.json()["rows"]) == 4  # two schools, the south's grade and class


def test_the_curve_counts_minutes_that_have_ended_only_once(sent: Sent) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mimamori.receipts.statistics import timeline

    schools = School.objects.all()
    later = (sent.broadcast.send_requested_at or timezone.now()) + timedelta(minutes=10)
    first = timeline(sent.broadcast, schools, now=later)
    assert [p.confirmed for p in first.points] == [1, 3]
    with CaptureQueriesContext(connection) as queries:
        again = timeline(sent.broadcast, schools, now=later)
    assert again.points == first.points
    assert any('"confirmed_at" >=' in q["sql"] for q in queries.captured_queries), "minutes 1-4 not recounted"
    confirm(sent.broadcast, "oto@ezweb.ne.jp", 9)  # a minute that has not ended yet
    assert [p.confirmed for p in timeline(sent.broadcast, schools, now=later).points] == [1, 3, 4]


def _axis_labels(svg: str) -> list[tuple[float, str]]:
    return [
        (float(y), label)
        for y, label in re.findall(
            r'<text x="[\d.]+" y="([\d.]+)" text-anchor="end" dominant-baseline="middle"[^>]*>([^<]*)<', svg
        )
    ]


@pytest.mark.parametrize("registrants", [1, 2, 3, 5, 7])
def test_the_chart_axis_labels_never_share_a_line_for_a_small_audience(registrants: int) -> None:
    """With 1 recipient, 0 %, 25 % and 50 % were printed on one line: the ticks were a quarter
    of the audience, rounded to whole registrants."""
    from mimamori.console import receipts
    from mimamori.receipts.statistics import Timeline

    now = timezone.now()
    svg = receipts._chart(
        Timeline(start=now - timedelta(minutes=5), end=now, step=timedelta(minutes=1), points=[]), registrants
    )
    labels = _axis_labels(svg)
    assert labels[0][1] == "0%"
    assert labels[-1][1] == "100%"
    heights = [y for y, _ in labels]
    assert all(lower - upper >= receipts.MIN_TICK_GAP for lower, upper in itertools.pairwise(heights))
    assert len({label for _, label in labels}) == len(labels)


def test_the_chart_axis_for_every_audience_size() -> None:
    from mimamori.console import receipts

    plot_h = receipts.HEIGHT - receipts.TOP - receipts.BOTTOM
    for registrants in [*range(0, 400), 999, 1000, 12345, 100000]:
        for top in (max(registrants, 1), registrants + 3):
            ticks = receipts.ticks(registrants, top)
            counts = [count for count, _ in ticks]
            assert counts[0] == 0, (registrants, top, ticks)
            assert counts[-1] == top, (registrants, top, ticks)
            gaps = [(b - a) * plot_h / top for a, b in itertools.pairwise(counts)]
            assert gaps, (registrants, top, ticks)
            assert min(gaps) >= receipts.MIN_TICK_GAP, (registrants, top, ticks)
            if registrants:
                labels = [label for _, label in ticks]
                assert len(set(labels)) == len(labels), (registrants, top, ticks)
            if registrants and registrants % 4 == 0 and top == registrants:
                assert [label for _, label in ticks] == ["0%", "25%", "50%", "75%", "100%"]

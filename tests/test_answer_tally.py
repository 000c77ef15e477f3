"""Answers on the staff side (B1): the tally per answer by school, grade and class, the lists of
who has not answered and of who chose each answer (screen and CSV), closing answering, answer
choices in compose and in alert templates, the API's fields, and reminders that skip the answered.

Answers are recorded through receipts.answering.record_answers, the verb behind the guardian's
page, with the tokens of the mails the worker path really sent."""

from __future__ import annotations

import csv
import importlib
import io
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts import statistics
from mimamori.receipts.answering import AnsweringClosed, record_answers
from mimamori.receipts.reminders import ReminderRefused, send_reminder
from mimamori.registry import alert_templates
from mimamori.registry.access import schools_for
from mimamori.registry.answers import SAFETY
from mimamori.registry.models import AlertTemplate, Municipality, Registrant, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"
BOM = "\ufeff"
SAFE, INJURED, HELP = 0, 1, 2
QUAKE_TEMPLATE = "地震発生時の安否確認"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


def token(broadcast: Broadcast, address: str) -> str:
    return Delivery.objects.get(broadcast=broadcast, email=address).confirmation_token or ""


def answer(broadcast: Broadcast, address: str, chosen: dict[Registrant, int]) -> None:
    assert record_answers(token(broadcast, address), {r.pk: a for r, a in chosen.items()}) is not None


def send_asking(staff: User, answers: list[str] = SAFETY) -> Broadcast:
    broadcast = sending.compose(
        staff,
        subject="【安否確認】地震",
        body="お子様の安否をお知らせください。",
        scope=resolve_scope(staff),
        answers=answers,
    )
    sending.send(broadcast, by=staff)
    run_until_quiet()
    broadcast.refresh_from_db()
    return broadcast


@dataclass
class Quake:
    city: Municipality
    north: School
    south: School
    staff: User
    broadcast: Broadcast
    kids: dict[str, Registrant]


@pytest.fixture
def quake(smtp_sink: Sink) -> Quake:
    """A city of two schools after a quake: 7 children, 5 answered, 2 not.

    北小: 3年1組 あ (無事), い (支援が必要); 3年2組 う (支援が必要; a name a spreadsheet would run);
    5年1組 え (けが) and her brother お in 2年1組 at one shared address, answered for え only.
    南小: 1年1組 か (無事), き (no answer).
    """
    city = make_municipality()
    north = make_school(city, name="北小学校")
    south = make_school(city, name="南小学校")
    kids = {
        "あ": make_registrant(
            north, ["aoi.home@docomo.ne.jp"], grade=3, class_name="1", child_name="見守 あ"
        ),
        "い": make_registrant(north, ["iroha.mama@au.com"], grade=3, class_name="1", child_name="見守 い"),
        "う": make_registrant(
            north, ["umi.papa@ezweb.ne.jp"], grade=3, class_name="2", child_name="=HYPERLINK(1)"
        ),
        "え": make_registrant(
            north, ["family@softbank.ne.jp"], grade=5, class_name="1", child_name="見守 え"
        ),
        "お": make_registrant(
            north, ["family@softbank.ne.jp"], grade=2, class_name="1", child_name="見守 お"
        ),
        "か": make_registrant(south, ["kaede@docomo.ne.jp"], grade=1, class_name="1", child_name="見守 か"),
        "き": make_registrant(south, ["kiri@docomo.ne.jp"], grade=1, class_name="1", child_name="見守 き"),
    }
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    broadcast = send_asking(staff)
    answer(broadcast, "aoi.home@docomo.ne.jp", {kids["あ"]: SAFE})
    answer(broadcast, "iroha.mama@au.com", {kids["い"]: SAFE})
    answer(broadcast, "iroha.mama@au.com", {kids["い"]: HELP})  # changed: counted once, as 支援
    answer(broadcast, "umi.papa@ezweb.ne.jp", {kids["う"]: HELP})
    answer(broadcast, "family@softbank.ne.jp", {kids["え"]: INJURED})
    answer(broadcast, "kaede@docomo.ne.jp", {kids["か"]: SAFE})
    return Quake(city, north, south, staff, broadcast, kids)


# --- the tally ------------------------------------------------------------------------------


def test_the_tally_counts_each_answer_by_school_grade_and_class(quake: Quake) -> None:
    stats = statistics.statistics(quake.broadcast, schools_for(quake.staff), opened=quake.north.pk)
    assert (stats.registrants, stats.confirmed, stats.unanswered) == (7, 5, 2)
    assert stats.answers == {SAFE: 2, INJURED: 1, HELP: 2}
    by_school = {row.school.name: row for row in stats.schools if row.school}
    assert by_school["北小学校"].answers == {SAFE: 1, INJURED: 1, HELP: 2}
    assert by_school["北小学校"].unanswered == 1
    assert by_school["南小学校"].answers == {SAFE: 1}
    assert by_school["南小学校"].grades == []  # only the school opened has its classes as rows
    classes = {
        (grade.grade, klass.class_name): klass.answers
        for grade in by_school["北小学校"].grades
        for klass in grade.classes
    }
    assert classes == {
        (2, "1"): {},
        (3, "1"): {SAFE: 1, HELP: 1},
        (3, "2"): {HELP: 1},
        (5, "1"): {INJURED: 1},
    }
    grade3 = next(grade for grade in by_school["北小学校"].grades if grade.grade == 3)
    assert (grade3.answers, grade3.unanswered) == ({SAFE: 1, HELP: 2}, 0)
    assert statistics.answer_counts(quake.broadcast) == {
        "無事です": 2,
        "けがをしています": 1,
        "支援が必要です": 2,
    }


def test_the_tally_reads_counters_not_receipts(quake: Quake) -> None:
    """The page polls every two seconds while a city answers: the same few queries however many
    have answered (the counters, summed by the database)."""
    client = signed_in(quake.staff)
    url = reverse("console:broadcast_receipts_data", args=[quake.broadcast.pk])
    client.get(url)  # warm the session and the curve's cache
    with CaptureQueriesContext(connection) as before:
        client.get(f"{url}?school={quake.north.pk}")
    answer(quake.broadcast, "kiri@docomo.ne.jp", {quake.kids["き"]: INJURED})
    with CaptureQueriesContext(connection) as after:
        client.get(f"{url}?school={quake.north.pk}")
    assert len(after) == len(before)
    assert not any("receipts_receipt" in q["sql"] and "answer" in q["sql"] for q in after.captured_queries)


def test_the_console_page_shows_the_tally_and_its_data_moves_live(quake: Quake) -> None:
    client = signed_in(quake.staff)
    html = client.get(reverse("console:broadcast_receipts", args=[quake.broadcast.pk])).content.decode()
    for choice in SAFETY:
        assert choice in html
    assert re.search(r'data-total="a2">2<', html)
    assert re.search(r'data-total="a2_share">28.6%<', html)
    assert re.search(r'data-total="unanswered">2<', html)
    assert "未回答" in html
    assert reverse("console:broadcast_answered", args=[quake.broadcast.pk, HELP]) in html
    assert reverse("console:broadcast_close_answers", args=[quake.broadcast.pk]) in html
    # The breakdown: one column per answer for every school row.
    rows = dict(re.findall(r'data-row="([^"]+)">(.*?)</tr>', html, re.S))
    north = dict(re.findall(r'data-col="(\w+)">([^<]*)<', rows[f"s{quake.north.pk}"]))
    assert (north["a0"], north["a1"], north["a2"], north["unanswered"]) == ("1", "1", "2", "1")

    url = reverse("console:broadcast_receipts_data", args=[quake.broadcast.pk])
    data = client.get(f"{url}?school={quake.north.pk}").json()
    assert (data["a0"], data["a1"], data["a2"], data["unanswered"]) == (2, 1, 2, 2)
    by_key = {row["key"]: row for row in data["rows"]}
    assert by_key[f"s{quake.south.pk}"]["a0"] == 1
    class_rows = [row for key, row in by_key.items() if key.startswith("c")]
    assert sorted((row["a0"], row["a1"], row["a2"]) for row in class_rows) == [
        (0, 0, 0),
        (0, 0, 1),
        (0, 1, 0),
        (1, 0, 1),
    ]
    # An answer given, one changed: the next poll shows both.
    answer(quake.broadcast, "kiri@docomo.ne.jp", {quake.kids["き"]: HELP})
    answer(quake.broadcast, "aoi.home@docomo.ne.jp", {quake.kids["あ"]: INJURED})
    again = client.get(url).json()
    assert (again["a0"], again["a1"], again["a2"], again["unanswered"]) == (1, 2, 3, 1)
    assert again["a2_share"] == "42.9%"


def test_a_bare_confirmation_page_has_no_answer_columns(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject="お知らせ", body="本文", scope=resolve_scope(staff), request_confirmation=True
    )
    sending.send(broadcast)
    run_until_quiet()
    client = signed_in(staff)
    html = client.get(reverse("console:broadcast_receipts", args=[broadcast.pk])).content.decode()
    assert 'data-total="a0"' not in html
    assert "回答を締め切る" not in html
    data = client.get(reverse("console:broadcast_receipts_data", args=[broadcast.pk])).json()
    assert "a0" not in data
    assert client.get(reverse("console:broadcast_answered", args=[broadcast.pk, 0])).status_code == 404


# --- the lists and the CSV ------------------------------------------------------------------


def test_the_list_of_an_answer_names_exactly_those_who_chose_it(quake: Quake) -> None:
    client = signed_in(quake.staff)
    page = client.get(reverse("console:broadcast_answered", args=[quake.broadcast.pk, HELP]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "支援が必要です" in html
    listed = {int(pk) for pk in re.findall(r'data-registrant="(\d+)"', html)}
    assert listed == {quake.kids["い"].pk, quake.kids["う"].pk}
    assert "ir***@au.com" in html  # masked as the unconfirmed list is (P2)
    assert "iroha.mama@au.com" not in html
    assert 'class="print-list"' in html
    safe = client.get(reverse("console:broadcast_answered", args=[quake.broadcast.pk, SAFE])).content.decode()
    assert {int(pk) for pk in re.findall(r'data-registrant="(\d+)"', safe)} == {
        quake.kids["あ"].pk,
        quake.kids["か"].pk,
    }
    assert client.get(reverse("console:broadcast_answered", args=[quake.broadcast.pk, 3])).status_code == 404


def test_the_list_of_those_who_have_not_answered(quake: Quake) -> None:
    client = signed_in(quake.staff)
    html = client.get(reverse("console:broadcast_unconfirmed", args=[quake.broadcast.pk])).content.decode()
    assert "未回答" in html
    listed = {int(pk) for pk in re.findall(r'data-registrant="(\d+)"', html)}
    # お's guardian answered for his sister only: he still counts as not answered.
    assert listed == {quake.kids["お"].pk, quake.kids["き"].pk}


def test_the_csv_of_an_answer_is_for_japanese_excel_and_neutralises_formulas(quake: Quake) -> None:
    client = signed_in(quake.staff)
    response = client.get(reverse("console:broadcast_answered_csv", args=[quake.broadcast.pk, HELP]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert f"answer-{quake.broadcast.pk}-3.csv" in response["Content-Disposition"]
    raw = b"".join(response.streaming_content).decode("utf-8")  # type: ignore[attr-defined]
    assert raw.startswith(BOM)
    assert "\n" not in raw.replace("\r\n", "")
    lines = list(csv.reader(io.StringIO(raw[len(BOM) :], newline="")))
    assert lines[0][:5] == ["学校", "学年", "組", "児童氏名", "ふりがな"]
    assert lines[0][-2:] == ["回答", "回答日時"]
    assert len(lines) == 3
    by_name = {line[3]: line for line in lines[1:]}
    assert by_name["見守 い"][:3] == ["北小学校", "3", "1"]
    assert by_name["見守 い"][5] == "ir***@au.com"
    assert by_name["見守 い"][7] == "支援が必要です"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", by_name["見守 い"][8])
    assert "'=HYPERLINK(1)" in by_name  # a spreadsheet shows it as text, never runs it
    event = AuditEvent.objects.get(action="export.answers_csv")
    assert event.target == f"broadcast {quake.broadcast.pk}"
    assert event.actor == quake.staff
    assert (
        client.get(reverse("console:broadcast_answered_csv", args=[quake.broadcast.pk, 7])).status_code == 404
    )


def test_staff_outside_the_broadcast_get_404(quake: Quake) -> None:
    outsiders = [
        make_staff(Role.SCHOOL, school=quake.north),  # a city-wide broadcast is the city's
        make_staff(Role.MUNICIPALITY, municipality=make_municipality()),
    ]
    for outsider in outsiders:
        client = signed_in(outsider)
        for name, args in (
            ("broadcast_answered", [quake.broadcast.pk, HELP]),
            ("broadcast_answered_csv", [quake.broadcast.pk, HELP]),
            ("broadcast_close_answers", [quake.broadcast.pk]),
        ):
            assert client.get(reverse(f"console:{name}", args=args)).status_code == 404
        assert (
            client.post(reverse("console:broadcast_close_answers", args=[quake.broadcast.pk])).status_code
            == 404
        )
    quake.broadcast.refresh_from_db()
    assert quake.broadcast.answers_closed_at is None


# --- closing answering -----------------------------------------------------------------------


def test_closing_answering_asks_first_then_closes_once_and_is_audited(quake: Quake) -> None:
    client = signed_in(quake.staff)
    url = reverse("console:broadcast_close_answers", args=[quake.broadcast.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200
    html = confirm.content.decode()
    assert "回答を締め切りますか" in html
    assert 'method="post"' in html
    quake.broadcast.refresh_from_db()
    assert quake.broadcast.answers_closed_at is None  # GET changes nothing

    done = client.post(url, follow=True)
    assert done.redirect_chain[-1][0] == reverse("console:broadcast_receipts", args=[quake.broadcast.pk])
    assert "回答を締め切りました" in done.content.decode()
    quake.broadcast.refresh_from_db()
    assert quake.broadcast.answers_closed_at is not None
    event = AuditEvent.objects.get(action="broadcast.answers_closed")
    assert (event.actor, event.target, event.municipality_id) == (
        quake.staff,
        f"broadcast {quake.broadcast.pk}",
        quake.city.pk,
    )
    with pytest.raises(AnsweringClosed):
        record_answers(token(quake.broadcast, "kiri@docomo.ne.jp"), {quake.kids["き"].pk: SAFE})
    # Reminders would ask for answers the page no longer takes.
    with pytest.raises(ReminderRefused):
        send_reminder(quake.broadcast, quake.staff)

    page = client.get(reverse("console:broadcast_receipts", args=[quake.broadcast.pk])).content.decode()
    assert url not in page
    client.post(url)
    assert AuditEvent.objects.filter(action="broadcast.answers_closed").count() == 1


def test_a_school_can_close_its_own_and_a_draft_cannot_be_closed(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    draft = sending.compose(
        staff, subject="安否確認", body="本文", scope=resolve_scope(staff), answers=SAFETY
    )
    client = signed_in(staff)
    client.post(reverse("console:broadcast_close_answers", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.answers_closed_at is None
    sending.send(draft, by=staff)
    run_until_quiet()
    client.post(reverse("console:broadcast_close_answers", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.answers_closed_at is not None


# --- compose -----------------------------------------------------------------------------------


def compose_post(**extra: object) -> dict[str, object]:
    return {
        "subject": "【安否確認】地震",
        "body": "お子様の安否をお知らせください。",
        "urgent": "on",
        **extra,
    }


def test_staff_compose_with_answer_choices_and_see_them_before_sending() -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)
    form = client.get(reverse("console:broadcast_new")).content.decode()
    assert form.count('name="answers"') == 6
    assert "安否確認（無事／けが／支援が必要）" in form

    response = client.post(
        reverse("console:broadcast_new"),
        compose_post(answers=["迎えに行けます", "", " 迎えに行けません ", ""]),
    )
    assert response.status_code == 302
    broadcast = Broadcast.objects.get()
    assert broadcast.answers == ["迎えに行けます", "迎えに行けません"]
    assert broadcast.request_confirmation  # answering is confirming
    detail = client.get(response["Location"]).content.decode()
    assert "<li>迎えに行けます</li>" in detail
    assert "<li>迎えに行けません</li>" in detail

    edit = client.get(reverse("console:broadcast_edit", args=[broadcast.pk])).content.decode()
    assert 'value="迎えに行けます"' in edit
    client.post(reverse("console:broadcast_edit", args=[broadcast.pk]), compose_post(answers=SAFETY))
    broadcast.refresh_from_db()
    assert broadcast.answers == SAFETY


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["無事です"], "回答の選択肢は2〜6個"),
        (["無事です", "無事です"], "重複"),
        ([f"選択肢{n}" for n in range(7)], "回答の選択肢は2〜6個"),
        (["無事です", "あ" * 41], "40文字まで"),
    ],
)
def test_wrong_answer_choices_are_refused_in_japanese(answers: list[str], message: str) -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    response = signed_in(staff).post(reverse("console:broadcast_new"), compose_post(answers=answers))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Broadcast.objects.exists()


def test_the_safety_shortcut_fills_the_choices_without_javascript_and_saves_nothing() -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    response = signed_in(staff).post(
        reverse("console:broadcast_new"), compose_post(answers=["", ""], fill_safety="1")
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert [re.search(f'value="{choice}"', html) is not None for choice in SAFETY] == [True, True, True]
    assert 'value="【安否確認】地震"' in html  # what was typed stays
    assert 'role="alert"' not in html
    assert not Broadcast.objects.exists()


def test_a_city_without_confirmation_links_is_not_offered_answers() -> None:
    city = make_municipality(confirmation_links_enabled=False)
    staff = make_staff(Role.SCHOOL, school=make_school(city))
    html = signed_in(staff).get(reverse("console:broadcast_new")).content.decode()
    assert 'name="answers"' not in html


# --- alert templates -------------------------------------------------------------------------


def test_the_common_quake_template_asks_the_safety_answers() -> None:
    city = make_municipality()
    alert_templates.add_common(city)
    quake = AlertTemplate.objects.get(municipality=city, name=QUAKE_TEMPLATE)
    assert quake.answers == SAFETY
    assert quake.urgent
    others = AlertTemplate.objects.filter(municipality=city).exclude(name=QUAKE_TEMPLATE)
    assert [t.answers for t in others] == [[], [], []]
    closed = make_municipality(confirmation_links_enabled=False)
    alert_templates.add_common(closed)
    assert AlertTemplate.objects.get(municipality=closed, name=QUAKE_TEMPLATE).answers == []


def test_staff_edit_a_templates_answers_and_using_it_fills_compose() -> None:
    city = make_municipality()
    school = make_school(city)
    alert_templates.add_common(city)
    template = AlertTemplate.objects.get(municipality=city, name="休校")
    editor = signed_in(make_staff(Role.MUNICIPALITY, municipality=city))
    form = editor.get(reverse("console:alert_template_edit", args=[template.pk])).content.decode()
    assert form.count('name="answers"') == 6
    response = editor.post(
        reverse("console:alert_template_edit", args=[template.pk]),
        {
            "municipality": city.pk,
            "name": template.name,
            "subject": template.subject,
            "body": template.body,
            "urgent": "on",
            "answers": ["お迎えに行けます", "", "お迎えに行けません"],
        },
    )
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.answers == ["お迎えに行けます", "お迎えに行けません"]
    bad = editor.post(
        reverse("console:alert_template_edit", args=[template.pk]),
        {
            "municipality": city.pk,
            "name": template.name,
            "subject": "件名",
            "body": "本文",
            "answers": ["一つ"],
        },
    )
    assert "回答の選択肢は2〜6個" in bad.content.decode()

    user = signed_in(make_staff(Role.SCHOOL, school=school))
    quake = AlertTemplate.objects.get(municipality=city, name=QUAKE_TEMPLATE)
    listed = user.get(reverse("console:alert_templates")).content.decode()
    assert "無事です／けがをしています／支援が必要です" in listed
    shown = user.get(reverse("console:alert_template_use", args=[quake.pk])).content.decode()
    assert "<li>支援が必要です</li>" in shown
    used = user.get(
        reverse("console:alert_template_use", args=[quake.pk]),
        {"go": "1", "when": "本日14時", "what": "震度5弱の地震がありました", "request": "ご回答ください。"},
    )
    assert used.status_code == 302
    query = parse_qs(urlsplit(used["Location"]).query)
    assert query["answers"] == SAFETY
    compose = user.get(used["Location"]).content.decode()
    assert [f'value="{choice}"' in compose for choice in SAFETY] == [True, True, True]


# --- the API -----------------------------------------------------------------------------------


def test_the_api_composes_with_answers_and_reports_the_tally(smtp_sink: Sink) -> None:
    city = make_municipality()
    school = make_school(city)
    one = make_registrant(school, ["one@docomo.ne.jp"], grade=1)
    two = make_registrant(school, ["two@docomo.ne.jp"], grade=2)
    make_registrant(school, ["three@docomo.ne.jp"], grade=3)
    api = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    created = api.post(
        "/broadcasts",
        {
            "scope": {},
            "subject": "安否確認",
            "body": "回答してください。",
            "request_confirmation": False,
            "answers": SAFETY,
        },
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["answers"] == SAFETY
    assert body["request_confirmation"] is True
    assert body["answers_closed_at"] is None
    broadcast = Broadcast.objects.get(pk=body["id"])
    assert api.post(f"/broadcasts/{broadcast.pk}/send").status_code == 202
    run_until_quiet()
    answer(broadcast, "one@docomo.ne.jp", {one: SAFE})
    answer(broadcast, "two@docomo.ne.jp", {two: HELP})

    counts = api.get(f"/broadcasts/{broadcast.pk}").json()["counts"]
    assert counts["answers"] == {"無事です": 1, "けがをしています": 0, "支援が必要です": 1}
    assert counts["confirmed"] == 2
    rows = api.get(f"/broadcasts/{broadcast.pk}/receipts").json()["items"]
    assert [row["answer"] for row in rows] == ["無事です", "支援が必要です", None]

    closed = api.post(f"/broadcasts/{broadcast.pk}/close-answers")
    assert closed.status_code == 200
    assert closed.json()["answers_closed_at"]
    assert api.post(f"/broadcasts/{broadcast.pk}/close-answers").status_code == 409
    assert AuditEvent.objects.filter(action="broadcast.answers_closed").count() == 1
    assert api.get(f"/broadcasts/{broadcast.pk}").json()["answers_closed_at"]


def test_the_api_without_answers_keeps_its_shape(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    api = Api(make_staff(Role.SCHOOL, school=school))
    created = api.post(
        "/broadcasts", {"scope": {}, "subject": "連絡", "body": "本文", "request_confirmation": True}
    )
    broadcast_id = created.json()["id"]
    assert created.json()["answers"] == []
    api.post(f"/broadcasts/{broadcast_id}/send")
    run_until_quiet()
    assert api.get(f"/broadcasts/{broadcast_id}").json()["counts"]["answers"] == {}
    assert api.get(f"/broadcasts/{broadcast_id}/receipts").json()["items"][0]["answer"] is None
    refused = api.post(f"/broadcasts/{broadcast_id}/close-answers")
    assert refused.status_code == 409
    assert "回答" in refused.json()["detail"]


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["無事です"], "回答の選択肢は2〜6個"),
        (["無事です", "無事です"], "重複"),
        ([f"選択肢{n}" for n in range(7)], None),
        (["無事です", ""], None),
        (["無事です", "a\nb"], None),
        (["無事です", "あ" * 41], None),
    ],
)
def test_the_api_refuses_wrong_answers_with_422_in_japanese(answers: list[str], message: str | None) -> None:
    school = make_school()
    api = Api(make_staff(Role.SCHOOL, school=school))
    response = api.post(
        "/broadcasts",
        {
            "scope": {},
            "subject": "安否確認",
            "body": "本文",
            "request_confirmation": True,
            "answers": answers,
        },
    )
    assert response.status_code == 422
    details = response.json()["detail"]
    assert any(detail["loc"][:2] == ["body", "answers"] for detail in details), details
    text = " ".join(detail["msg"] for detail in details)
    assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", text), text  # Japanese
    if message:
        assert message in text
    assert not Broadcast.objects.exists()


def test_the_api_lists_templates_with_their_answers() -> None:
    city = make_municipality()
    alert_templates.add_common(city)
    api = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    items = {item["name"]: item for item in api.get("/templates").json()["items"]}
    assert items[QUAKE_TEMPLATE]["answers"] == SAFETY
    assert items["休校"]["answers"] == []


# --- reminders -------------------------------------------------------------------------------


def test_a_reminder_of_an_answer_broadcast_skips_the_answered(smtp_sink: Sink) -> None:
    school = make_school()
    answered = make_registrant(school, ["answered@docomo.ne.jp"])
    make_registrant(school, ["waiting@docomo.ne.jp"])
    elder = make_registrant(school, ["siblings@au.com"], grade=5)
    make_registrant(school, ["siblings@au.com"], grade=2)
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = send_asking(staff)
    answer(broadcast, "answered@docomo.ne.jp", {answered: SAFE})
    answer(broadcast, "siblings@au.com", {elder: SAFE})  # the younger one not yet
    before = smtp_sink.copies()

    assert send_reminder(broadcast, staff) == 2
    run_until_quiet()
    reminded = sorted(Delivery.objects.filter(broadcast=broadcast, round=1).values_list("email", flat=True))
    assert reminded == ["siblings@au.com", "waiting@docomo.ne.jp"]
    assert sorted((smtp_sink.copies() - before).elements()) == reminded

    answer(
        broadcast,
        "siblings@au.com",
        {elder: SAFE, **{r: INJURED for r in Registrant.objects.filter(grade=2)}},
    )
    answer(
        broadcast,
        "waiting@docomo.ne.jp",
        {Registrant.objects.get(addresses__email="waiting@docomo.ne.jp"): SAFE},
    )
    with pytest.raises(ReminderRefused):
        send_reminder(broadcast, staff)  # everybody answered: nobody to remind


def test_an_earthquake_template_saved_before_answers_existed_gets_the_safety_choices() -> None:
    migration = importlib.import_module("mimamori.registry.migrations.0012_earthquake_template_answers")
    with_links, without_links = make_municipality(), make_municipality(confirmation_links_enabled=False)
    for city in (with_links, without_links):
        AlertTemplate.objects.filter(municipality=city, name=migration.NAME).delete()
        AlertTemplate.objects.create(municipality=city, name=migration.NAME, subject="s", body="b")
    other = AlertTemplate.objects.create(municipality=with_links, name="休校", subject="s", body="b")
    migration.forwards(apps, None)
    assert AlertTemplate.objects.get(municipality=with_links, name=migration.NAME).answers == SAFETY
    assert AlertTemplate.objects.get(municipality=without_links, name=migration.NAME).answers == []
    other.refresh_from_db()
    assert other.answers == []

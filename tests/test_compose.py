"""The console's compose (issue 14): the recipients picker from the registry as it is, class
names as teachers type them, the live count, no broadcast to nobody, drafts edited and deleted,
and a confirmation step whose mail is the mail a guardian gets, byte for byte."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import preview, sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus
from mimamori.broadcasts.targeting import audience, reach, resolve_scope
from mimamori.registry.models import School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


def compose(client: Client, **fields: Any) -> Any:
    data = {"subject": "不審者情報", "body": "下校時に注意してください。", **fields}
    return client.post(reverse("console:broadcast_new"), data)


def school_with_classes() -> tuple[School, User]:
    """Grade 3 with classes 1 (two children) and 2 (one); grade 5 with class 1 (one)."""
    school = make_school(name="緑小学校")
    make_registrant(school, ["a@example.jp"], grade=3, class_name="1")
    make_registrant(school, ["b@example.jp"], grade=3, class_name="1")
    make_registrant(school, ["c@example.jp"], grade=3, class_name="2")
    make_registrant(school, ["d@example.jp"], grade=5, class_name="1")
    make_registrant(school, ["off@example.jp"], grade=5, class_name="2", receive_broadcasts=False)
    return school, make_staff(Role.SCHOOL, school=school)


# --- class names as teachers type them ----------------------------------------------------


@pytest.mark.parametrize("typed", ["1組", "１組", "1", " 1 組", "１"])
def test_a_class_typed_any_way_targets_class_1(typed: str) -> None:
    _school, staff = school_with_classes()
    scope = resolve_scope(staff, grades=[3], classes=[typed])
    assert scope.classes == ("1",)
    broadcast = sending.compose(staff, subject="s", body="b", scope=scope)
    assert reach(broadcast).registrants == 2


@pytest.mark.parametrize("typed", ["1組", "１組", "1"])
def test_compose_with_classes_from_an_old_link_or_post_targets_class_1(typed: str) -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    # Posted as the old free-text box did.
    assert compose(client, grades=["3"], classes=typed).status_code == 302
    broadcast = Broadcast.objects.get()
    assert (broadcast.grades, broadcast.classes) == ([3], ["1"])
    # An old link: the picker opens with 3年1組 ticked.
    page = client.get(reverse("console:broadcast_new"), {"grades": "3", "classes": typed}).content.decode()
    assert re.search(r'<input[^>]*name="groups" value="3-1"[^>]*checked', page)
    assert not re.search(r'<input[^>]*name="groups" value="3-2"[^>]*checked', page)


@pytest.mark.parametrize("typed", ["1組", "１組"])
def test_a_child_enrolled_with_its_class_typed_any_way_is_in_class_1(typed: str) -> None:
    school, staff = school_with_classes()
    api = Api(staff)
    in_class_1 = api.get("/registrants?class_name=1").json()["count"]
    child = {
        "school": school.pk,
        "child_name": "見守 次郎",
        "grade": 3,
        "class_name": typed,
        "addresses": ["j@au.com"],
    }
    made = api.post("/registrants", child)
    assert made.status_code == 201, made.content
    assert made.json()["class_name"] == "1"
    assert api.get(f"/registrants?class_name={typed}").json()["count"] == in_class_1 + 1
    broadcast = sending.compose(
        staff, subject="s", body="b", scope=resolve_scope(staff, grades=[3], classes=["1"])
    )
    assert reach(broadcast).registrants == 3


# --- the picker ---------------------------------------------------------------------------


def test_the_picker_offers_the_schools_grades_and_classes_with_counts() -> None:
    _school, staff = school_with_classes()
    page = signed_in(staff).get(reverse("console:broadcast_new")).content.decode()
    assert "3年全体（3）" in page
    assert "5年全体（1）" in page  # the one who does not receive broadcasts is not counted
    assert re.search(r'value="3-1"[^>]*>\s*1組（2）', page)
    assert re.search(r'value="3-2"[^>]*>\s*2組（1）', page)
    assert 'value="5-2"' not in page
    assert 'value="4' not in page  # no grade 4 in this school
    assert 'type="text" name="classes"' not in page  # no free-text box any more


def test_municipality_staff_see_each_school_with_its_count() -> None:
    city = make_municipality()
    east, west = make_school(city, name="東小学校"), make_school(city, name="西小学校")
    make_registrant(east, ["e1@example.jp"])
    make_registrant(east, ["e2@example.jp"])
    make_registrant(west, ["w1@example.jp"])
    page = signed_in(make_staff(Role.MUNICIPALITY, municipality=city)).get(reverse("console:broadcast_new"))
    assert "東小学校（2）" in page.content.decode()
    assert "西小学校（1）" in page.content.decode()


def test_classes_ticked_in_one_grade_and_whole_grades_make_the_scope() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    assert compose(client, groups=["3-1", "3-2"]).status_code == 302
    assert compose(client, grades=["5"], groups=["5-1"]).status_code == 302  # the class adds nothing
    assert compose(client, grades=["5"]).status_code == 302
    scopes = [(b.grades, b.classes, b.grade_classes) for b in Broadcast.objects.order_by("pk")]
    assert scopes == [([], [], [[3, "1"], [3, "2"]]), ([5], [], []), ([5], [], [])]


# --- any set of whole grades and classes --------------------------------------------------


def test_classes_of_different_grades_reach_exactly_those_classes() -> None:
    _school, staff = school_with_classes()
    # Once refused: as grades × classes, 3年2組 and 5年1組 would have reached 3年1組 too.
    scope = resolve_scope(staff, groups=[(3, "2組"), (5, "１")])
    assert (scope.grades, scope.classes, scope.groups) == ((), (), ((3, "2"), (5, "1")))
    broadcast = sending.compose(staff, subject="s", body="b", scope=scope)
    assert broadcast.grade_classes == [[3, "2"], [5, "1"]]
    assert sorted(a.email for a in audience(broadcast)) == ["c@example.jp", "d@example.jp"]


def test_a_whole_grade_and_a_class_of_another_grade() -> None:
    _school, staff = school_with_classes()
    scope = resolve_scope(staff, grades=[3], groups=[(5, "1"), (3, "2")])  # 3年2組 is in grade 3
    assert (scope.grades, scope.groups) == ((3,), ((5, "1"),))
    broadcast = sending.compose(staff, subject="s", body="b", scope=scope)
    assert sorted(a.email for a in audience(broadcast)) == [
        "a@example.jp",
        "b@example.jp",
        "c@example.jp",
        "d@example.jp",
    ]
    # Classes named beside classes of a grade are crossed with the grades named.
    crossed = resolve_scope(staff, grades=[5], classes=["2組"], groups=[(3, "1")])
    assert (crossed.grades, crossed.classes, crossed.groups) == ((), (), ((3, "1"), (5, "2")))


def test_the_old_grades_times_classes_meaning_is_kept() -> None:
    _school, staff = school_with_classes()
    scope = resolve_scope(staff, grades=[3, 5], classes=["1"])
    assert scope.groups == ()
    broadcast = sending.compose(staff, subject="s", body="b", scope=scope)
    assert broadcast.grade_classes == []
    assert sorted(a.email for a in audience(broadcast)) == ["a@example.jp", "b@example.jp", "d@example.jp"]


@pytest.mark.parametrize(
    "classes",
    [
        [(3, "組")],  # folds to nothing: dropped, it would widen the scope to every grade
        [(0, "1")],
        [(3, "1\x00")],
    ],
)
def test_classes_of_a_grade_that_name_nothing_are_refused(classes: list[tuple[int, str]]) -> None:
    _school, staff = school_with_classes()
    with pytest.raises(ValidationError) as refused:
        resolve_scope(staff, groups=classes)
    assert "groups" in refused.value.message_dict


def test_classes_of_every_grade_beside_classes_of_a_grade_are_refused() -> None:
    _school, staff = school_with_classes()
    with pytest.raises(ValidationError) as refused:
        resolve_scope(staff, classes=["1"], groups=[(3, "2")])  # class 1 of which grade?
    assert refused.value.message_dict["classes"] == [
        "全学年の組と、学年を指定した組は一度に選べません。学年を選んでください。"
    ]


@pytest.mark.parametrize(
    ("picked", "reached"),
    [
        ({"groups": ["3-2", "5-1"]}, ["c@example.jp", "d@example.jp"]),
        ({"grades": ["5"], "groups": ["3-2"]}, ["c@example.jp", "d@example.jp"]),
        ({"grades": ["3"], "classes": "1組"}, ["a@example.jp", "b@example.jp"]),  # an old link's
    ],
)
def test_a_broadcast_to_any_classes_is_delivered_to_exactly_them(
    smtp_sink: Sink, picked: dict[str, Any], reached: list[str]
) -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    assert compose(client, **picked).status_code == 302
    broadcast = Broadcast.objects.get()
    assert client.post(reverse("console:broadcast_send", args=[broadcast.pk])).status_code == 302
    run_until_quiet()
    assert sorted(smtp_sink.copies().elements()) == reached
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.registrant_count, broadcast.message_count) == (
        BroadcastStatus.SENT,
        len(reached),
        len(reached),
    )


def test_the_broadcast_page_names_the_classes_chosen() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    compose(client, groups=["5-1", "3-2"])
    compose(client, grades=["5"], groups=["3-2"])
    compose(client, grades=["3"], classes="1")
    pages = [
        client.get(reverse("console:broadcast", args=[b.pk])).content.decode()
        for b in Broadcast.objects.order_by("pk")
    ]
    assert '<span class="scope-groups">3年2組、5年1組</span>' in pages[0]
    assert "2 家庭・2 通" in pages[0]
    assert '<span class="scope-groups">3年2組、5年全体</span>' in pages[1]
    assert "3年" in pages[2]
    assert "1組" in pages[2]
    assert "scope-groups" not in pages[2]


# --- the live count -----------------------------------------------------------------------


def test_the_live_count_says_households_and_mails_for_the_choice() -> None:
    school = make_school()
    make_registrant(school, ["home@example.jp", "papa@example.jp"], grade=1, class_name="1")
    make_registrant(school, ["HOME@example.jp"], grade=2, class_name="1")  # a sibling, same address
    make_registrant(school, ["x@example.jp"], grade=2, class_name="2")
    client = signed_in(make_staff(Role.SCHOOL, school=school))
    url = reverse("console:broadcast_reach")
    assert client.get(url).json() == {"registrants": 3, "messages": 3, "text": "3 家庭・3 通"}
    assert client.get(url, {"groups": ["1-1", "2-1"]}).json()["text"] == "2 家庭・2 通"
    assert client.get(url, {"grades": "2"}).json()["text"] == "2 家庭・2 通"
    assert client.get(url, {"classes": "２組"}).json()["text"] == "1 家庭・1 通"
    # Classes of different grades, and a whole grade with a class of another: no more than those.
    assert client.get(url, {"groups": ["1-1", "2-2"]}).json()["text"] == "2 家庭・3 通"
    assert client.get(url, {"grades": "1", "groups": ["2-2"]}).json()["text"] == "2 家庭・3 通"
    assert client.get(url, {"grades": "4"}).json()["text"] == "0 家庭・0 通"
    other = make_school()
    assert client.get(url, {"schools": str(other.pk)}).json() == {
        "errors": ["送信できるのは自分の担当範囲の学校だけです。"]
    }


# --- nobody to send to --------------------------------------------------------------------


def test_a_broadcast_to_nobody_cannot_be_sent_from_the_console_or_the_api() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    assert compose(client, grades=["4"]).status_code == 302
    broadcast = Broadcast.objects.get()
    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "0 家庭・0 通" in page
    assert "送信しても誰にも届きません" in page
    assert reverse("console:broadcast_send", args=[broadcast.pk]) not in page  # no send button

    sent = client.post(reverse("console:broadcast_send", args=[broadcast.pk]), follow=True)
    assert "このお知らせを受け取る人がいません" in sent.content.decode()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.DRAFT

    answer = Api(staff).post(f"/broadcasts/{broadcast.pk}/send")
    assert answer.status_code == 409
    assert "このお知らせを受け取る人がいません" in answer.json()["detail"]
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.DRAFT
    assert not AuditEvent.objects.filter(action="broadcast.sent").exists()


# --- drafts -------------------------------------------------------------------------------


def test_a_draft_is_edited_in_place_with_the_form_filled_in() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    compose(client, subject="下校時刻変更", groups=["3-1", "3-2"], urgent="on")
    broadcast = Broadcast.objects.get()
    edit_url = reverse("console:broadcast_edit", args=[broadcast.pk])
    confirmation = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert edit_url in confirmation

    form = client.get(edit_url).content.decode()
    assert 'value="下校時刻変更"' in form
    assert re.search(r'name="groups" value="3-1"[^>]*checked', form)
    assert re.search(r'name="groups" value="3-2"[^>]*checked', form)
    assert re.search(r'name="urgent"[^>]*checked', form)

    changed = client.post(
        edit_url, {"subject": "下校時刻の変更", "body": "14時に下校します。", "groups": ["3-2"]}
    )
    assert changed.status_code == 302
    assert changed["Location"] == reverse("console:broadcast", args=[broadcast.pk])
    broadcast.refresh_from_db()
    assert Broadcast.objects.count() == 1  # previewing again made no second draft
    assert (broadcast.subject, broadcast.body, broadcast.urgent) == (
        "下校時刻の変更",
        "14時に下校します。",
        False,
    )
    assert (broadcast.grades, broadcast.classes, broadcast.grade_classes) == ([], [], [[3, "2"]])


def test_a_draft_to_classes_of_different_grades_is_edited_with_them_ticked() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    compose(client, groups=["3-2", "5-1"])
    broadcast = Broadcast.objects.get()
    edit_url = reverse("console:broadcast_edit", args=[broadcast.pk])
    form = client.get(edit_url).content.decode()
    ticked = set(re.findall(r'<input[^>]*name="(grades|groups)" value="([^"]+)"[^>]*checked', form))
    assert ticked == {("groups", "3-2"), ("groups", "5-1")}

    assert (
        client.post(edit_url, {"subject": "s", "body": "b", "grades": ["5"], "groups": ["3-1"]}).status_code
        == 302
    )
    broadcast.refresh_from_db()
    assert (broadcast.grades, broadcast.grade_classes) == ([5], [[3, "1"]])
    form = client.get(edit_url).content.decode()
    ticked = set(re.findall(r'<input[^>]*name="(grades|groups)" value="([^"]+)"[^>]*checked', form))
    assert ticked == {("grades", "5"), ("groups", "3-1")}
    assert reach(broadcast).registrants == 3  # 3年1組 (two) and 5年1組; 5年2組 receives no broadcasts


def test_a_draft_is_deleted_by_post_and_audited_a_sent_one_is_not() -> None:
    school, staff = school_with_classes()
    client = signed_in(staff)
    compose(client)
    draft = Broadcast.objects.get()
    url = reverse("console:broadcast_delete", args=[draft.pk])
    assert client.get(url).status_code == 405
    assert Broadcast.objects.filter(pk=draft.pk).exists()
    deleted = client.post(url, follow=True)
    assert "下書きを削除しました" in deleted.content.decode()
    assert not Broadcast.objects.filter(pk=draft.pk).exists()
    event = AuditEvent.objects.get(action="broadcast.draft_deleted")
    assert (event.actor, event.target, event.municipality) == (
        staff,
        f"broadcast {draft.pk}",
        school.municipality,
    )

    compose(client)
    sent = Broadcast.objects.get()
    assert sending.send(sent, by=staff)
    refused = client.post(reverse("console:broadcast_delete", args=[sent.pk]), follow=True)
    assert "既に送信されているため、削除できません" in refused.content.decode()
    assert Broadcast.objects.filter(pk=sent.pk).exists()
    assert client.get(reverse("console:broadcast_edit", args=[sent.pk])).status_code == 302


def test_staff_of_another_school_cannot_edit_or_delete_a_draft() -> None:
    _school, staff = school_with_classes()
    compose(signed_in(staff))
    draft = Broadcast.objects.get()
    stranger = signed_in(make_staff(Role.SCHOOL, school=make_school()))
    assert stranger.get(reverse("console:broadcast_edit", args=[draft.pk])).status_code == 404
    assert stranger.post(reverse("console:broadcast_delete", args=[draft.pk])).status_code == 404
    assert Broadcast.objects.filter(pk=draft.pk).exists()


def test_compose_starts_from_values_in_the_address() -> None:
    _school, staff = school_with_classes()
    page = (
        signed_in(staff)
        .get(
            reverse("console:broadcast_new"),
            {
                "subject": "休校のお知らせ",
                "body": "明日は休校です。",
                "urgent": "1",
                "request_confirmation": "1",
            },
        )
        .content.decode()
    )
    assert 'value="休校のお知らせ"' in page
    assert "明日は休校です。</textarea>" in page
    assert re.search(r'name="urgent"[^>]*checked', page)
    assert re.search(r'name="request_confirmation"[^>]*checked', page)
    assert not Broadcast.objects.exists()  # GET changes nothing


# --- the confirmation step: the mail a guardian gets --------------------------------------


def test_the_confirmation_shows_the_mail_with_the_confirmation_block_and_the_lane() -> None:
    _school, staff = school_with_classes()
    client = signed_in(staff)
    compose(client, groups=["3-1"], urgent="on", request_confirmation="on")
    broadcast = Broadcast.objects.get()
    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "2 家庭・2 通" in page
    assert "緊急：ほかのメールより先に送ります" in page
    assert "【緊急】不審者情報" in page
    assert "■受信確認のお願い" in page
    assert f"/c/{preview.PERSONAL_TOKEN}/" in page
    assert "送信する（2 家庭・2 通）" in page


def _normalised(content: bytes) -> tuple[list[bytes], bytes]:
    """The header lines (each mail's own To, Date, Message-ID and personal links masked) and the
    decoded text with the personal links masked."""
    head, _sep, body = content.partition(b"\r\n\r\n")
    lines = re.sub(rb"\r\n[ \t]", b" ", head).split(b"\r\n")  # unfolded
    masked = []
    for line in lines:
        name = line.partition(b":")[0].lower()
        if name in (b"to", b"date", b"message-id", b"list-unsubscribe"):
            line = name + b": *"
        masked.append(line)
    text = base64.b64decode(body)
    text = re.sub(rb"/c/[0-9a-zA-Z]+/", b"/c/*/", text)
    return masked, text


def test_the_previewed_mail_is_the_delivered_mail_byte_for_byte(smtp_sink: Sink) -> None:
    city = make_municipality(one_click_unsubscribe=True)
    school = make_school(city, name="緑小学校", local="midori-sho")
    make_registrant(school, ["family@example.jp"], child_name="見守 一郎", grade=5)
    make_registrant(school, ["family@example.jp"], child_name="見守 花子", grade=2)
    make_registrant(school, ["zz@example.jp"], child_name="見守 次郎", grade=1)
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="本日15時ごろ、緑町で不審者が目撃されました。\n集団下校とします。",
        scope=resolve_scope(staff),
        urgent=True,
        request_confirmation=True,
    )
    shown = preview.sample(broadcast)
    assert shown is not None
    assert shown.to == "family@example.jp"
    assert "■受信確認のお願い" in shown.body

    assert sending.send(broadcast, by=staff)
    run_until_quiet()
    [delivered] = smtp_sink.raw_to("family@example.jp")
    # The same headers in the same order, and the same text, but for each mail's own values.
    assert _normalised(shown.content) == _normalised(delivered)
    assert b"List-Unsubscribe:" in delivered
    assert b"List-Unsubscribe:" in shown.content
    token = broadcast.deliveries.get(email="family@example.jp").confirmation_token
    assert f"/c/{token}/".encode() in base64.b64decode(delivered.partition(b"\r\n\r\n")[2])
    # Unmasked, the differences are exactly those values.
    differing = {
        a.partition(b":")[0]
        for a, b in zip(
            shown.content.partition(b"\r\n\r\n")[0].split(b"\r\n"),
            delivered.partition(b"\r\n\r\n")[0].split(b"\r\n"),
            strict=True,
        )
        if a != b
    }
    assert differing <= {b"To", b"Date", b"Message-ID", b"List-Unsubscribe"}

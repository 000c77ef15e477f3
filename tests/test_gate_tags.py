"""IC tags on registrants (B6): the API, the roster column, the console's tag page, and the audit
of every change; a tag another child of the school carries is refused (or, on the console, moved
on purpose) and a refusal changes nothing."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry import tags
from mimamori.registry.models import Registrant, School
from mimamori.registry.registrants import deregister, registrant_target
from mimamori.registry.roster import import_roster
from tests.cast import make_municipality, make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


class Api:
    """JSON with one staff member's bearer token."""

    def __init__(self, user: User) -> None:
        self.client = Client()
        _token, raw = ApiToken.issue(user)
        self.headers = {"Authorization": f"Bearer {raw}"}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        kwargs: dict[str, Any] = {"headers": {**self.headers, **headers}}
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        return getattr(self.client, method)(f"/api/v1{path}", **kwargs)


class Cast:
    def __init__(self) -> None:
        self.city = make_municipality(name="岩見沢市")
        self.school: School = make_school(self.city, name="東小学校")
        self.other_school: School = make_school(self.city, name="西小学校")
        self.hanako: Registrant = make_registrant(
            self.school, ["hanako@docomo.ne.jp"], child_name="見守 花子"
        )
        self.ichiro: Registrant = make_registrant(
            self.school, ["ichiro@docomo.ne.jp"], child_name="岩見沢 一郎"
        )
        self.staff = make_staff(Role.SCHOOL, school=self.school)
        self.other_staff = make_staff(Role.SCHOOL, school=self.other_school)
        self.api = Api(self.staff)


@pytest.fixture
def cast() -> Cast:
    return Cast()


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("pk"))


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


# --- the verb ----------------------------------------------------------------------------


def test_set_tag_normalizes_and_audits_every_change(cast: Cast) -> None:
    assert tags.set_tag(cast.hanako, " ０１２３ＡＢcd ", by=cast.staff)
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == "0123ABcd"  # full-width folded, trimmed, case kept
    assert not tags.set_tag(cast.hanako, "0123ABcd", by=cast.staff)  # unchanged: nothing recorded
    assert tags.set_tag(cast.hanako, "", by=cast.staff)
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == ""
    changes = _events("registrant.tag_changed")
    assert [(e.details["old"], e.details["new"]) for e in changes] == [("", "0123ABcd"), ("0123ABcd", "")]
    assert {e.target for e in changes} == {registrant_target(cast.hanako)}
    assert {e.actor for e in changes} == {cast.staff}


@pytest.mark.parametrize("bad", ["01 23", "タグ", "a/b", "x" * 65, "01\t23"])
def test_set_tag_refuses_a_tag_outside_the_rule(cast: Cast, bad: str) -> None:
    with pytest.raises(tags.ValidationError) as refused:
        tags.set_tag(cast.hanako, bad, by=cast.staff)
    assert "tag_id" in refused.value.message_dict
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == ""
    assert not _events("registrant.tag_changed")


def test_a_taken_tag_is_refused_unless_moved_and_the_move_is_audited(cast: Cast) -> None:
    tags.set_tag(cast.ichiro, "04A1B2C3D4E5F6", by=cast.staff)
    with pytest.raises(tags.TagTaken) as taken:
        tags.set_tag(cast.hanako, "04A1B2C3D4E5F6", by=cast.staff)
    assert taken.value.holder.pk == cast.ichiro.pk
    cast.hanako.refresh_from_db()
    cast.ichiro.refresh_from_db()
    assert (cast.hanako.tag_id, cast.ichiro.tag_id) == ("", "04A1B2C3D4E5F6")

    assert tags.set_tag(cast.hanako, "04A1B2C3D4E5F6", by=cast.staff, move=True)
    cast.hanako.refresh_from_db()
    cast.ichiro.refresh_from_db()
    assert (cast.hanako.tag_id, cast.ichiro.tag_id) == ("04A1B2C3D4E5F6", "")
    [moved] = _events("registrant.tag_reassigned")
    assert moved.details == {
        "tag": "04A1B2C3D4E5F6",
        "from": registrant_target(cast.ichiro),
        "to": registrant_target(cast.hanako),
    }
    assert moved.actor == cast.staff


def test_the_same_tag_at_another_school_is_another_tag(cast: Cast) -> None:
    elsewhere = make_registrant(cast.other_school)
    tags.set_tag(cast.hanako, "CAFE0001", by=cast.staff)
    assert tags.set_tag(elsewhere, "CAFE0001", by=cast.other_staff)


def test_deregistration_frees_the_tag(cast: Cast) -> None:
    tags.set_tag(cast.ichiro, "CAFE0002", by=cast.staff)
    deregister(cast.ichiro)
    cast.ichiro.refresh_from_db()
    assert cast.ichiro.tag_id == ""
    assert tags.set_tag(cast.hanako, "CAFE0002", by=cast.staff)  # no one to move it from


# --- API ---------------------------------------------------------------------------------


def test_api_create_with_a_tag_and_read_it_back(cast: Cast) -> None:
    body = {
        "school": cast.school.pk,
        "child_name": "滝川 三郎",
        "grade": 2,
        "class_name": "1",
        "tag_id": " 0A1B ",
    }
    response = cast.api.call("post", "/registrants", body)
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["tag_id"] == "0A1B"
    assert cast.api.call("get", f"/registrants/{created['id']}").json()["tag_id"] == "0A1B"
    [event] = _events("registrant.created")
    assert event.details["tag_id"] == "0A1B"
    listed = cast.api.call("get", f"/registrants?school={cast.school.pk}").json()["items"]
    assert {item["tag_id"] for item in listed} == {"", "0A1B"}


def test_api_create_with_a_taken_tag_is_refused_and_creates_nothing(cast: Cast) -> None:
    tags.set_tag(cast.hanako, "0A1B", by=cast.staff)
    before = Registrant.objects.count()
    body = {
        "school": cast.school.pk,
        "child_name": "滝川 三郎",
        "grade": 2,
        "class_name": "1",
        "tag_id": "0A1B",
    }
    japanese = cast.api.call("post", "/registrants", body)
    assert japanese.status_code == 409
    assert "タグ 0A1B は、この学校の別の児童" in japanese.json()["detail"]
    assert cast.hanako.login_id in japanese.json()["detail"]
    english = cast.api.call("post", "/registrants", body, **{"Accept-Language": "en"})
    assert english.status_code == 409
    assert english.json()["detail"].startswith(
        "The tag 0A1B is already given to another child of this school"
    )
    assert Registrant.objects.count() == before


def test_api_patch_sets_changes_and_clears_the_tag(cast: Cast) -> None:
    path = f"/registrants/{cast.hanako.pk}"
    assert cast.api.call("patch", path, {"tag_id": "0A1B"}).json()["tag_id"] == "0A1B"
    assert cast.api.call("patch", path, {"tag_id": "0A1C"}).json()["tag_id"] == "0A1C"
    assert (
        cast.api.call("patch", path, {"receive_broadcasts": False}).json()["tag_id"] == "0A1C"
    )  # missing: kept
    assert cast.api.call("patch", path, {"tag_id": ""}).json()["tag_id"] == ""
    changes = [(e.details["old"], e.details["new"]) for e in _events("registrant.tag_changed")]
    assert changes == [("", "0A1B"), ("0A1B", "0A1C"), ("0A1C", "")]


def test_api_patch_with_a_taken_tag_changes_nothing(cast: Cast) -> None:
    tags.set_tag(cast.ichiro, "0A1B", by=cast.staff)
    response = cast.api.call(
        "patch", f"/registrants/{cast.hanako.pk}", {"receive_broadcasts": False, "tag_id": "0A1B"}
    )
    assert response.status_code == 409
    assert cast.ichiro.login_id in response.json()["detail"]
    cast.hanako.refresh_from_db()
    cast.ichiro.refresh_from_db()
    assert cast.hanako.receive_broadcasts  # the other change of the request was undone too
    assert (cast.hanako.tag_id, cast.ichiro.tag_id) == ("", "0A1B")
    assert not _events("registrant.option_changed")
    assert not _events("registrant.tag_reassigned")


def test_api_refuses_a_tag_outside_the_rule_with_the_rule(cast: Cast) -> None:
    response = cast.api.call("patch", f"/registrants/{cast.hanako.pk}", {"tag_id": "01 23"})
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "tag_id"]
    assert error["msg"] == "タグIDに使えるのは英字、数字と記号 : . _ - だけです（空白は使えません）。"


def test_api_other_school_cannot_tag_the_child(cast: Cast) -> None:
    outsider = Api(cast.other_staff)
    response = outsider.call("patch", f"/registrants/{cast.hanako.pk}", {"tag_id": "0A1B"})
    assert response.status_code == 404
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == ""


# --- roster ------------------------------------------------------------------------------

HEADER = "学年,組,児童氏名,メールアドレス1,タグID\r\n"


def _import(school: School, csv_text: str) -> Any:
    return import_roster(school, csv_text.encode(), letters=StringIO())


def test_roster_gives_the_tags(cast: Cast) -> None:
    roster = _import(cast.school, HEADER + "2,1,滝川 三郎,saburo@docomo.ne.jp,0A1B\r\n2,1,夕張 四郎,,\r\n")
    assert roster.ok, roster.errors
    assert dict(Registrant.objects.filter(grade=2).values_list("child_name", "tag_id")) == {
        "滝川 三郎": "0A1B",
        "夕張 四郎": "",
    }
    english = _import(cast.other_school, "grade,class,child_name,tag_id\n1,1,芦別 五郎,０Ａ１Ｂ\n")
    assert english.ok, english.errors
    assert Registrant.objects.get(child_name="芦別 五郎").tag_id == "0A1B"


def test_roster_refuses_one_tag_for_two_children_with_the_line(cast: Cast) -> None:
    before = Registrant.objects.count()
    roster = _import(
        cast.school,
        HEADER + "2,1,滝川 三郎,,0A1B\r\n2,1,夕張 四郎,,0A1C\r\n2,2,芦別 五郎,,0A1B\r\n",
    )
    assert not roster.ok
    [error] = roster.errors
    assert (error.line, error.column) == (4, "タグID")
    assert error.message == "同じタグIDが2行目にもあります。1つのタグは1人の児童にだけ割り当てられます。"
    assert Registrant.objects.count() == before


def test_roster_refuses_a_tag_a_child_of_the_school_carries(cast: Cast) -> None:
    tags.set_tag(cast.hanako, "0A1B", by=cast.staff)
    before = Registrant.objects.count()
    roster = _import(cast.school, HEADER + "2,1,滝川 三郎,,0A1B\r\n2,1,夕張 四郎,,01 23\r\n")
    assert [(e.line, e.column) for e in roster.errors] == [(2, "タグID"), (3, "タグID")]
    assert roster.errors[0].message == "このタグIDは、この学校の別の児童に割り当て済みです。"
    assert Registrant.objects.count() == before
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == "0A1B"


def test_console_roster_upload_audits_the_tags_given(cast: Cast) -> None:
    client = _signed_in(cast.staff)
    upload = SimpleUploadedFile("roster.csv", (HEADER + "2,1,滝川 三郎,,0A1B\r\n").encode())
    response = client.post(reverse("console:roster_upload", args=[cast.school.pk]), {"file": upload})
    assert response.status_code == 200
    [event] = _events("registrant.imported")
    assert (event.details["count"], event.details["tags"]) == (1, 1)


# --- console -----------------------------------------------------------------------------


def test_console_registrant_page_shows_the_tag_and_the_tag_page_sets_it(cast: Cast) -> None:
    client = _signed_in(cast.staff)
    tags.set_tag(cast.hanako, "0A1B", by=cast.staff)
    page = client.get(reverse("console:registrant", args=[cast.hanako.pk])).content.decode()
    assert "ICタグ" in page
    assert "0A1B" in page
    url = reverse("console:registrant_tag", args=[cast.hanako.pk])
    assert 'value="0A1B"' in client.get(url).content.decode()
    response = client.post(url, {"tag_id": "0A1C"})
    assert response.status_code == 302
    assert response["Location"] == reverse("console:registrant", args=[cast.hanako.pk])
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == "0A1C"
    assert _events("registrant.tag_changed")[-1].details == {"old": "0A1B", "new": "0A1C"}


def test_console_refuses_a_bad_tag_and_changes_nothing(cast: Cast) -> None:
    client = _signed_in(cast.staff)
    response = client.post(reverse("console:registrant_tag", args=[cast.hanako.pk]), {"tag_id": "01 23"})
    assert response.status_code == 400
    assert "タグIDに使えるのは英字、数字と記号" in response.content.decode()
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == ""


def test_console_offers_to_move_a_taken_tag(cast: Cast) -> None:
    tags.set_tag(cast.ichiro, "0A1B", by=cast.staff)
    client = _signed_in(cast.staff)
    url = reverse("console:registrant_tag", args=[cast.hanako.pk])
    asked = client.post(url, {"tag_id": "0A1B"})
    assert asked.status_code == 409
    page = asked.content.decode()
    assert "タグ 0A1B は 岩見沢 一郎" in page
    assert "何も変更していません" in page
    assert "このタグをこの児童に移す" in page
    cast.ichiro.refresh_from_db()
    assert cast.ichiro.tag_id == "0A1B"
    assert not _events("registrant.tag_reassigned")

    moved = client.post(url, {"tag_id": "0A1B", "move": "True"})
    assert moved.status_code == 302
    cast.hanako.refresh_from_db()
    cast.ichiro.refresh_from_db()
    assert (cast.hanako.tag_id, cast.ichiro.tag_id) == ("0A1B", "")
    [event] = _events("registrant.tag_reassigned")
    assert event.details["from"] == registrant_target(cast.ichiro)
    assert event.details["to"] == registrant_target(cast.hanako)


def test_console_tag_page_of_another_school_is_missing(cast: Cast) -> None:
    client = _signed_in(cast.other_staff)
    url = reverse("console:registrant_tag", args=[cast.hanako.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"tag_id": "0A1B"}).status_code == 404
    cast.hanako.refresh_from_db()
    assert cast.hanako.tag_id == ""


def test_console_registrant_search_finds_a_tag(cast: Cast) -> None:
    tags.set_tag(cast.hanako, "0A1B", by=cast.staff)
    page = _signed_in(cast.staff).get(reverse("console:registrants"), {"q": "0A1B"}).content.decode()
    assert "見守 花子" in page
    assert "岩見沢 一郎" not in page


def test_audit_log_reads_the_tag_events(cast: Cast) -> None:
    tags.set_tag(cast.ichiro, "0A1B", by=cast.staff)
    tags.set_tag(cast.hanako, "0A1B", by=cast.staff, move=True)
    page = _signed_in(make_staff(Role.CENTRE)).get(reverse("console:audit")).content.decode()
    assert "ICタグの変更" in page
    assert "ICタグを別の児童から移動" in page
    assert "ICタグ — → 0A1B。" in page

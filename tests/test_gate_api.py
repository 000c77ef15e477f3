"""The gate endpoints: staff register, list and revoke readers; a reader posts its passes with
its own token, which opens nothing else."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.api.endpoints import api
from mimamori.audit.models import AuditEvent
from mimamori.gates.models import GatePass, GateReader, PassOutcome
from mimamori.mail.models import OutgoingMail
from mimamori.registry.models import Municipality, Registrant, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db


def call(method: str, path: str, token: str | None, body: Any = None) -> Any:
    kwargs: dict[str, Any] = {"headers": {"Authorization": f"Bearer {token}"} if token else {}}
    if body is not None:
        kwargs.update(data=body, content_type="application/json")
    response = getattr(Client(), method)(f"/api/v1{path}", **kwargs)
    assert response["Content-Type"].startswith("application/json"), response.content
    return response


def staff_token(user: User) -> str:
    return ApiToken.issue(user)[1]


@pytest.fixture
def city() -> Municipality:
    return make_municipality("minato")


@pytest.fixture
def school(city: Municipality) -> School:
    return make_school(city, name="港小学校", local="minato-es")


@pytest.fixture
def staff(school: School) -> User:
    return make_staff(Role.SCHOOL, school=school)


def register(token: str, school: School, name: str = "正門", place: str = "") -> dict[str, Any]:
    response = call("post", "/gate-readers", token, {"school": school.pk, "name": name, "place": place})
    assert response.status_code == 201, response.content
    made: dict[str, Any] = response.json()
    return made


def tagged(school: School, tag: str) -> Registrant:
    registrant = make_registrant(school, ["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    registrant.tag_id = tag
    registrant.save(update_fields=["tag_id"])
    return registrant


def events(*items: tuple[str, str, str]) -> dict[str, Any]:
    at = timezone.localtime(timezone.now() - timedelta(seconds=30)).isoformat()
    return {
        "events": [{"id": i, "tag": tag, "direction": direction, "at": at} for i, tag, direction in items]
    }


def test_staff_register_a_reader_and_it_posts_passes(school: School, staff: User) -> None:
    made = register(staff_token(staff), school, "正門", "校舎南側")
    assert made["token"].startswith("mgr_")
    assert (made["school"], made["name"], made["place"], made["active"]) == (
        school.pk,
        "正門",
        "校舎南側",
        True,
    )
    tagged(school, "04A1")
    body = events(("1", "04A1", "in"), ("2", "FFFF", "in"))
    response = call("post", "/gate-events", made["token"], body)
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2, "duplicates": 0, "unknown_tags": 1}
    again = call("post", "/gate-events", made["token"], body)
    assert again.json() == {"accepted": 0, "duplicates": 2, "unknown_tags": 0}
    assert OutgoingMail.objects.filter(kind="gate_pass").count() == 2
    reader = GateReader.objects.get()
    assert reader.last_posted_at is not None
    assert AuditEvent.objects.filter(action="gate_reader.registered", actor_name=staff.username).exists()


def test_the_list_shows_no_token_and_keeps_to_the_scope(
    city: Municipality, school: School, staff: User
) -> None:
    other_school = make_school(city, name="港中学校", local="minato-jhs")
    centre = staff_token(make_staff(Role.CENTRE))
    mine = register(centre, school)
    theirs = register(centre, other_school)
    listed = call("get", "/gate-readers", staff_token(staff))
    assert [row["id"] for row in listed.json()] == [mine["id"]]
    assert "token" not in listed.json()[0]
    assert all(theirs["token"] not in str(row) for row in listed.json())
    city_staff = staff_token(make_staff(Role.MUNICIPALITY, municipality=city))
    assert {row["id"] for row in call("get", "/gate-readers", city_staff).json()} == {
        mine["id"],
        theirs["id"],
    }
    elsewhere = staff_token(make_staff(Role.MUNICIPALITY, municipality=make_municipality("shibuya")))
    assert call("get", "/gate-readers", elsewhere).json() == []


def test_a_school_cannot_register_or_revoke_another_schools_reader(city: Municipality, staff: User) -> None:
    other_school = make_school(city, name="港中学校", local="minato-jhs")
    token = staff_token(staff)
    response = call("post", "/gate-readers", token, {"school": other_school.pk, "name": "正門"})
    assert response.status_code == 404
    theirs = register(staff_token(make_staff(Role.CENTRE)), other_school)
    assert call("post", f"/gate-readers/{theirs['id']}/revoke", token).status_code == 404
    assert GateReader.objects.get(pk=theirs["id"]).is_active


def test_a_revoked_reader_gets_401(school: School, staff: User) -> None:
    token = staff_token(staff)
    made = register(token, school)
    revoked = call("post", f"/gate-readers/{made['id']}/revoke", token)
    assert revoked.status_code == 200
    assert revoked.json()["active"] is False
    assert call("post", f"/gate-readers/{made['id']}/revoke", token).status_code == 200  # again: the same
    assert AuditEvent.objects.filter(action="gate_reader.revoked").count() == 1
    response = call("post", "/gate-events", made["token"], events(("1", "T", "in")))
    assert response.status_code == 401
    assert not GatePass.objects.exists()


@pytest.mark.parametrize("token", [None, "", "mgr_nonsense", "mmr_nonsense"])
def test_no_or_a_wrong_token_gets_401(token: str | None) -> None:
    assert call("post", "/gate-events", token, events(("1", "T", "in"))).status_code == 401


def test_a_staff_token_does_not_post_passes(staff: User) -> None:
    assert call("post", "/gate-events", staff_token(staff), events(("1", "T", "in"))).status_code == 401


def _operations() -> list[tuple[str, str]]:
    paths = api.get_openapi_schema(path_prefix="/api/v1")["paths"]
    found = []
    for path, operations in paths.items():
        for method in operations:
            concrete = re.sub(r"\{[^}]+\}", "1", path.removeprefix("/api/v1"))
            found.append((method, concrete))
    return sorted(found)


def test_a_reader_token_opens_no_other_endpoint(school: School, staff: User) -> None:
    token = register(staff_token(staff), school)["token"]
    operations = [op for op in _operations() if op[1] != "/gate-events"]
    assert len(operations) > 20  # every family: registry, broadcasts, reminders, audit, maintenance, …
    for method, path in operations:
        response = call(method, path, token, {} if method in ("post", "put", "patch") else None)
        assert response.status_code in (401, 403), (method, path, response.status_code)
    client = Client()
    for page in ("/api/v1/openapi.json", "/api/v1/docs"):
        response = client.get(page, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (302, 401), page
    assert client.get("/console/", headers={"Authorization": f"Bearer {token}"}).status_code == 302


def test_a_malformed_batch_is_422_located_and_records_nothing(school: School, staff: User) -> None:
    token = register(staff_token(staff), school)["token"]
    tagged(school, "T")
    body = events(("1", "T", "in"), ("2", "T", "sideways"))
    response = call("post", "/gate-events", token, body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "events", 1, "direction"]
    no_offset = events(("1", "T", "in"))
    no_offset["events"][0]["at"] = "2026-04-08T07:58:00"
    assert call("post", "/gate-events", token, no_offset).status_code == 422
    not_a_day = events(("1", "T", "in"))
    not_a_day["events"][0]["at"] = "2026-02-31T07:58:00+09:00"
    response = call("post", "/gate-events", token, not_a_day)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "events", 0, "at"]
    too_many = {"events": [events((str(n), "T", "in"))["events"][0] for n in range(1001)]}
    assert call("post", "/gate-events", token, too_many).status_code == 422
    assert call("post", "/gate-events", token, {"events": "nope"}).status_code == 422
    not_json = Client().post(
        "/api/v1/gate-events",
        data=b"{",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert not_json.status_code == 400
    assert not GatePass.objects.exists()


def test_an_old_backlog_through_the_api_is_accepted_and_not_mailed(school: School, staff: User) -> None:
    token = register(staff_token(staff), school)["token"]
    tagged(school, "T")
    backlog = events(("1", "T", "in"))
    backlog["events"][0]["at"] = (timezone.now() - timedelta(hours=3)).isoformat()
    assert call("post", "/gate-events", token, backlog).json()["accepted"] == 1
    assert GatePass.objects.get().outcome == PassOutcome.OLD
    assert not OutgoingMail.objects.exists()

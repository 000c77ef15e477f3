"""The broadcast endpoints of the REST API, end to end over a real SMTP sink, and their scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from mimamori.accounts.models import Role
from mimamori.broadcasts.models import Broadcast, BroadcastStatus
from mimamori.registry.models import Municipality, School
from tests.cast import api_document, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def city() -> Municipality:
    return make_municipality("minato", name="港区")


@pytest.fixture
def school(city: Municipality) -> School:
    return make_school(city, name="港小学校", local="minato-es")


@pytest.fixture
def school_api(school: School) -> Api:
    return Api(make_staff(Role.SCHOOL, school=school))


def draft(api: Api, scope: dict[str, Any] | None = None, **fields: Any) -> Any:
    body = {
        "scope": scope or {},
        "subject": "不審者情報",
        "body": "下校時に注意してください。",
        "request_confirmation": False,
        **fields,
    }
    return api.post("/broadcasts", body)


def _has_offset(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None


def test_compose_send_and_watch_until_sent(school: School, school_api: Api, smtp_sink: Sink) -> None:
    make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp", "three@gmail.com"], grade=5)
    make_registrant(school, ["sibling@au.com"], grade=5, class_name="2")
    make_registrant(school, ["SIBLING@au.com"], grade=2)
    make_registrant(school, ["off@docomo.ne.jp"], receive_broadcasts=False)

    created = draft(school_api, {"schools": [school.pk], "grades": [5, 2]}, urgent=True)
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["status"] == "draft"
    assert (data["subject"], data["urgent"], data["request_confirmation"]) == ("不審者情報", True, False)
    assert data["scope"] == {
        "municipalities": [],
        "schools": [school.pk],
        "grades": [2, 5],
        "classes": [],
        "groups": [],
    }
    # Three children; slot 3 is not sent to, and the siblings' shared address is one mail.
    assert data["preview"] == {"registrants": 3, "messages": 3}
    assert _has_offset(data["created_at"])
    assert smtp_sink.copies() == {}

    sent = school_api.post(f"/broadcasts/{data['id']}/send")
    assert sent.status_code == 202
    assert sent.json() == {"id": data["id"], "status": "sending", "send_at": None}
    assert school_api.get(f"/broadcasts/{data['id']}").json()["status"] == "sending"

    run_until_quiet()
    shown = school_api.get(f"/broadcasts/{data['id']}").json()
    assert shown["status"] == "sent"
    assert shown["counts"] == {
        "registrants": 3,
        "messages": 3,
        "sent": 3,
        "failed": 0,
        "pending": 0,
        "suppressed": 0,
        "confirmed": 0,
        "answers": {},
    }
    assert sum(smtp_sink.copies().values()) == shown["counts"]["sent"]
    assert {a.lower() for a in smtp_sink.copies()} == {
        "one@docomo.ne.jp",
        "two@ezweb.ne.jp",
        "sibling@au.com",
    }
    assert all(_has_offset(shown[f]) for f in ("created_at", "send_requested_at", "finished_at"))

    again = school_api.post(f"/broadcasts/{data['id']}/send")
    assert again.status_code == 409
    assert "送信済み" in again.json()["detail"]
    run_until_quiet()
    assert sum(smtp_sink.copies().values()) == 3


def test_permanent_failures_are_listed_and_retried(school: School, school_api: Api, smtp_sink: Sink) -> None:
    make_registrant(school, ["nobody@docomo.ne.jp", "fine@docomo.ne.jp"])
    smtp_sink.refusals["nobody@docomo.ne.jp"] = ["552 5.2.2 Mailbox full"]
    broadcast_id = draft(school_api).json()["id"]
    school_api.post(f"/broadcasts/{broadcast_id}/send")
    run_until_quiet()

    shown = school_api.get(f"/broadcasts/{broadcast_id}").json()
    assert (shown["status"], shown["counts"]["sent"], shown["counts"]["failed"]) == ("sent", 1, 1)
    failed = school_api.get(f"/broadcasts/{broadcast_id}/deliveries?status=failed").json()
    assert failed["count"] == 1
    (row,) = failed["items"]
    assert (row["email"], row["status"], row["reply"], row["accepted_at"]) == (
        "nobody@docomo.ne.jp",
        "failed",
        "552 5.2.2 Mailbox full",
        None,
    )
    assert row["attempts"] == 1
    everything = school_api.get(f"/broadcasts/{broadcast_id}/deliveries?limit=1&offset=1").json()
    assert everything["count"] == 2
    assert len(everything["items"]) == 1
    accepted = school_api.get(f"/broadcasts/{broadcast_id}/deliveries?status=accepted").json()["items"]
    assert [d["email"] for d in accepted] == ["fine@docomo.ne.jp"]
    assert _has_offset(accepted[0]["accepted_at"])
    assert school_api.get(f"/broadcasts/{broadcast_id}/deliveries?status=lost").status_code == 422

    smtp_sink.refusals.clear()
    retried = school_api.post(f"/broadcasts/{broadcast_id}/retry")
    assert (retried.status_code, retried.json()) == (200, {"retried": 1})
    run_until_quiet()
    shown = school_api.get(f"/broadcasts/{broadcast_id}").json()
    assert (shown["status"], shown["counts"]["sent"], shown["counts"]["failed"]) == ("sent", 2, 0)
    assert smtp_sink.copies() == {"nobody@docomo.ne.jp": 1, "fine@docomo.ne.jp": 1}
    assert school_api.post(f"/broadcasts/{broadcast_id}/retry").json() == {"retried": 0}


def test_another_schools_staff_can_neither_see_nor_touch_it(
    city: Municipality, school: School, school_api: Api, smtp_sink: Sink
) -> None:
    make_registrant(school, ["nobody@docomo.ne.jp"])
    smtp_sink.refusals["nobody@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    broadcast_id = draft(school_api, subject="港小学校だけの連絡").json()["id"]
    neighbour_school = make_school(city)
    neighbour = Api(make_staff(Role.SCHOOL, school=neighbour_school))

    for method, path in [
        ("get", ""),
        ("post", "/send"),
        ("post", "/retry"),
        ("get", "/deliveries"),
        ("get", "/deliveries?status=failed"),
    ]:
        response = neighbour.call(
            method, f"/broadcasts/{broadcast_id}{path}", {} if method == "post" else None
        )
        assert response.status_code == 404, (method, path)
        assert "港小学校" not in response.content.decode()
    assert Broadcast.objects.get(pk=broadcast_id).status == BroadcastStatus.DRAFT
    assert neighbour.get("/broadcasts").json() == {"items": [], "count": 0}

    school_api.post(f"/broadcasts/{broadcast_id}/send")
    run_until_quiet()
    assert neighbour.post(f"/broadcasts/{broadcast_id}/retry").status_code == 404
    assert smtp_sink.attempts["nobody@docomo.ne.jp"] == 1


def test_targeting_outside_the_tokens_scope_is_refused_and_creates_nothing(
    city: Municipality, school: School
) -> None:
    neighbour = Api(make_staff(Role.SCHOOL, school=make_school(city)))
    refused = draft(neighbour, {"schools": [school.pk]})
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "scope", "schools"]
    assert error["msg"]

    other_city = make_municipality()
    city_staff = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    for scope in ({"municipality": other_city.code}, {"municipalities": [city.code, other_city.code]}):
        refused = draft(city_staff, scope)
        assert refused.status_code == 422, scope
        assert refused.json()["detail"][0]["loc"] == ["body", "scope", "municipalities"]
    assert draft(city_staff, {"schools": [make_school(other_city).pk]}).status_code == 422
    assert not Broadcast.objects.exists()


def test_municipality_staff_target_their_city(city: Municipality, school: School, smtp_sink: Sink) -> None:
    second = make_school(city)
    make_registrant(school, ["a@docomo.ne.jp"])
    make_registrant(second, ["b@docomo.ne.jp"], class_name="2")
    make_registrant(make_school(make_municipality()), ["elsewhere@docomo.ne.jp"])
    city_staff = Api(make_staff(Role.MUNICIPALITY, municipality=city))

    created = draft(city_staff, {"municipality": city.code})
    assert created.status_code == 201, created.json()
    assert created.json()["scope"]["municipalities"] == [city.code]
    assert created.json()["preview"] == {"registrants": 2, "messages": 2}
    narrowed = draft(city_staff, {"municipality": city.code, "classes": ["2"]}).json()
    assert narrowed["preview"] == {"registrants": 1, "messages": 1}

    city_staff.post(f"/broadcasts/{created.json()['id']}/send")
    run_until_quiet()
    assert smtp_sink.copies() == {"a@docomo.ne.jp": 1, "b@docomo.ne.jp": 1}
    listed = city_staff.get("/broadcasts").json()
    assert listed["count"] == 2
    assert [b["id"] for b in listed["items"]] == [narrowed["id"], created.json()["id"]]  # newest first
    assert city_staff.get("/broadcasts?limit=1&offset=1").json()["items"][0]["id"] == created.json()["id"]
    # A city-wide broadcast also reaches other schools: school staff do not see it.
    assert Api(make_staff(Role.SCHOOL, school=school)).get("/broadcasts").json()["count"] == 0


def test_the_centre_must_choose_and_may_name_several_cities() -> None:
    centre = Api(make_staff(Role.CENTRE))
    first, second = make_municipality(), make_municipality()
    refused = draft(centre, {})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "scope", "municipalities"]
    created = draft(centre, {"municipalities": [second.code, first.code]})
    assert created.status_code == 201
    assert created.json()["scope"]["municipalities"] == sorted([first.code, second.code])


def test_confirmation_is_refused_where_a_city_offers_no_confirmation_links(city: Municipality) -> None:
    quiet = make_municipality(name="静か市", confirmation_links_enabled=False)
    centre = Api(make_staff(Role.CENTRE))
    refused = draft(centre, {"municipalities": [city.code, quiet.code]}, request_confirmation=True)
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body", "request_confirmation"]
    assert "静か市" in error["msg"]
    assert "受信確認" in error["msg"]
    school_staff = Api(make_staff(Role.SCHOOL, school=make_school(quiet)))
    assert draft(school_staff, {}, request_confirmation=True).status_code == 422
    assert not Broadcast.objects.exists()

    allowed = draft(centre, {"municipality": city.code}, request_confirmation=True)
    assert allowed.status_code == 201
    assert allowed.json()["request_confirmation"] is True
    assert draft(school_staff, {}).status_code == 201


def test_empty_subject_is_refused_per_field(school_api: Api) -> None:
    refused = draft(school_api, subject="  ", body="")
    assert refused.status_code == 422
    assert {tuple(e["loc"]) for e in refused.json()["detail"]} == {("body", "subject"), ("body", "body")}
    assert not Broadcast.objects.exists()


def test_no_token_is_401_and_the_paths_are_documented(school_api: Api) -> None:
    broadcast_id = draft(school_api).json()["id"]
    for method, path in [
        ("post", "/broadcasts"),
        ("get", "/broadcasts"),
        ("get", f"/broadcasts/{broadcast_id}"),
        ("post", f"/broadcasts/{broadcast_id}/send"),
        ("get", f"/broadcasts/{broadcast_id}/deliveries"),
        ("get", f"/broadcasts/{broadcast_id}/receipts"),
        ("post", f"/broadcasts/{broadcast_id}/retry"),
        ("post", f"/broadcasts/{broadcast_id}/reminders"),
        ("get", f"/broadcasts/{broadcast_id}/reminders"),
        ("post", f"/broadcasts/{broadcast_id}/close-answers"),
    ]:
        assert Api().call(method, path).status_code == 401, (method, path)
    assert Broadcast.objects.get().status == BroadcastStatus.DRAFT

    paths = api_document()["paths"]
    assert {
        "/api/v1/broadcasts": {"get", "post"},
        "/api/v1/broadcasts/{broadcast_id}": {"get"},
        "/api/v1/broadcasts/{broadcast_id}/send": {"post"},
        "/api/v1/broadcasts/{broadcast_id}/cancel": {"post"},
        "/api/v1/broadcasts/{broadcast_id}/deliveries": {"get"},
        "/api/v1/broadcasts/{broadcast_id}/receipts": {"get"},
        "/api/v1/broadcasts/{broadcast_id}/retry": {"post"},
        "/api/v1/broadcasts/{broadcast_id}/reminders": {"get", "post"},
        "/api/v1/broadcasts/{broadcast_id}/close-answers": {"post"},
    } == {path: set(item) for path, item in paths.items() if path.startswith("/api/v1/broadcasts")}


def test_a_broadcast_to_classes_of_different_grades_through_the_api(
    school: School, school_api: Api, smtp_sink: Sink
) -> None:
    make_registrant(school, ["three-two@example.jp"], grade=3, class_name="2")
    make_registrant(school, ["three-one@example.jp"], grade=3, class_name="1")
    make_registrant(school, ["five-one@example.jp"], grade=5, class_name="1")
    make_registrant(school, ["five-two@example.jp"], grade=5, class_name="2")
    make_registrant(school, ["six@example.jp"], grade=6, class_name="3")

    groups = [{"grade": 3, "class_name": "2組"}, {"grade": 5, "class_name": "１"}]
    created = draft(school_api, {"grades": [6], "groups": groups})
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["scope"] == {
        "municipalities": [],
        "schools": [school.pk],
        "grades": [6],
        "classes": [],
        "groups": [{"grade": 3, "class_name": "2"}, {"grade": 5, "class_name": "1"}],
    }
    assert data["preview"] == {"registrants": 3, "messages": 3}
    assert school_api.get(f"/broadcasts/{data['id']}").json()["scope"] == data["scope"]

    assert school_api.post(f"/broadcasts/{data['id']}/send").status_code == 202
    run_until_quiet()
    assert sorted(smtp_sink.copies()) == ["five-one@example.jp", "six@example.jp", "three-two@example.jp"]

    # A class that folds to nothing would widen the scope: refused, where it was named.
    refused = draft(school_api, {"groups": [{"grade": 3, "class_name": "組"}]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "scope", "groups"]
    beside = draft(school_api, {"classes": ["1"], "groups": groups})
    assert beside.status_code == 422
    assert beside.json()["detail"][0]["loc"] == ["body", "scope", "classes"]

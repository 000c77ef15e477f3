"""The REST API: bearer tokens, scope (404 outside, 403 out of role), and the registry endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory
from django.utils import timezone

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.registry.models import Municipality, Registrant, RegistrantStatus, School
from tests.cast import PASSWORD, api_document, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

BAD_DOTS = "a..b@docomo.ne.jp"


class Api:
    """A client that speaks JSON with one staff member's bearer token."""

    def __init__(self, user: User | None = None, raw: str | None = None) -> None:
        self.client = Client()
        if raw is None and user is not None:
            _token, raw = ApiToken.issue(user)
        self.headers = {"Authorization": f"Bearer {raw}"} if raw else {}

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        send = getattr(self.client, method)
        kwargs: dict[str, Any] = {"headers": {**self.headers, **headers}}
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        response = send(f"/api/v1{path}", **kwargs)
        assert response["Content-Type"].startswith("application/json")
        return response

    def get(self, path: str, **headers: str) -> Any:
        return self.call("get", path, **headers)

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        return self.call("post", path, body if body is not None else {}, **headers)

    def patch(self, path: str, body: Any, **headers: str) -> Any:
        return self.call("patch", path, body, **headers)


@pytest.fixture
def city() -> Municipality:
    return make_municipality("minato")


@pytest.fixture
def school(city: Municipality) -> School:
    return make_school(city, name="港小学校", local="minato-es")


@pytest.fixture
def centre() -> Api:
    return Api(make_staff(Role.CENTRE))


@pytest.fixture
def school_api(school: School) -> Api:
    return Api(make_staff(Role.SCHOOL, school=school))


def _can_log_in(registrant: Registrant) -> bool:
    # Through the real backends, django-axes included (it needs a request).
    request = RequestFactory().post("/portal/login/")
    return authenticate(request, username=registrant.login_id, password=PASSWORD) is not None


def _has_offset(value: str) -> bool:
    return datetime.fromisoformat(value).utcoffset() is not None


# --- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer mmr_not-a-real-token"}, {"Authorization": "Basic x"}]
)
def test_missing_or_wrong_token_is_401(headers: dict[str, str]) -> None:
    response = Client().get("/api/v1/schools", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "認証が必要です"}


def test_revoked_token_is_401(school: School) -> None:
    token, raw = ApiToken.issue(make_staff(Role.SCHOOL, school=school))
    assert Api(raw=raw).get("/schools").status_code == 200
    token.revoked_at = timezone.now()
    token.save()
    assert Api(raw=raw).get("/schools").status_code == 401


def test_tokens_of_inactive_staff_and_guardians_are_401(school: School) -> None:
    staff = make_staff(Role.SCHOOL, school=school)
    _token, raw = ApiToken.issue(staff)
    staff.is_active = False
    staff.save()
    assert Api(raw=raw).get("/schools").status_code == 401
    guardian = make_registrant(school).account
    assert Api(guardian).get("/schools").status_code == 401


def test_last_used_is_recorded_at_most_once_a_minute(school: School) -> None:
    token, raw = ApiToken.issue(make_staff(Role.SCHOOL, school=school))
    api = Api(raw=raw)
    api.get("/schools")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None
    api.get("/schools")
    token.refresh_from_db()
    assert token.last_used_at == first


def test_openapi_document_lists_the_paths_and_the_bearer_scheme(db: None) -> None:
    document = api_document()
    for path in ("/municipalities", "/schools", "/registrants", "/registrants/{registrant_id}/deregister"):
        assert f"/api/v1{path}" in document["paths"]
    schemes = document["components"]["securitySchemes"]
    assert any(s == {"type": "http", "scheme": "bearer"} for s in schemes.values())


# --- municipalities and schools -------------------------------------------------------


def test_centre_creates_a_municipality(centre: Api) -> None:
    response = centre.post(
        "/municipalities",
        {
            "code": "chuo",
            "name": "中央市",
            "mail_domain": "mail.chuo.example.jp",
            "support_contact": {
                "name": "窓口",
                "phone": "0120-1",
                "email": "help@chuo.example.jp",
                "hours": "9-17",
            },
            "settings": {"confirmation_links_enabled": False, "broadcast_slots": [1, 2, 3]},
        },
    )
    assert response.status_code == 201, response.json()
    assert response.json()["support_contact"]["email"] == "help@chuo.example.jp"
    stored = Municipality.objects.get(code="chuo")
    assert stored.broadcast_slots == [1, 2, 3]
    assert stored.confirmation_links_enabled is False
    assert centre.get("/municipalities").json()[0]["code"] == "chuo"


def test_duplicate_municipality_code_is_409(centre: Api, city: Municipality) -> None:
    response = centre.post("/municipalities", {"code": city.code, "name": "x", "mail_domain": "x.example.jp"})
    assert response.status_code == 409
    assert response.json()["detail"] == f"コード {city.code} の自治体はすでに登録されています。"


def test_bad_mail_domain_is_422_and_creates_nothing(centre: Api) -> None:
    response = centre.post("/municipalities", {"code": "bad", "name": "x", "mail_domain": "not a domain"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "mail_domain"]
    assert not Municipality.objects.filter(code="bad").exists()


def test_municipality_staff_cannot_create_a_municipality(city: Municipality) -> None:
    api = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    response = api.post("/municipalities", {"code": "new", "name": "x", "mail_domain": "x.example.jp"})
    assert response.status_code == 403
    assert "サポートセンターだけ" in response.json()["detail"]
    assert not Municipality.objects.filter(code="new").exists()


def test_municipality_staff_create_schools_only_in_their_city(city: Municipality) -> None:
    other = make_municipality("other")
    api = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    created = api.post(
        "/schools", {"municipality": city.code, "name": "東小学校", "sender_local_part": "higashi"}
    )
    assert created.status_code == 201
    assert created.json()["sender_address"] == f"higashi@{city.mail_domain}"
    assert (
        api.post("/schools", {"municipality": other.code, "name": "x", "sender_local_part": "x"}).status_code
        == 404
    )
    assert not School.objects.filter(municipality=other).exists()
    assert [s["name"] for s in api.get("/schools").json()] == ["東小学校"]
    assert [m["code"] for m in api.get("/municipalities").json()] == [city.code]


def test_school_staff_cannot_create_a_school(school_api: Api, city: Municipality) -> None:
    response = school_api.post("/schools", {"municipality": city.code, "name": "x", "sender_local_part": "x"})
    assert response.status_code == 403
    assert School.objects.count() == 1


def test_duplicate_sender_is_409(centre: Api, school: School) -> None:
    body = {
        "municipality": school.municipality.code,
        "name": "x",
        "sender_local_part": school.sender_local_part,
    }
    response = centre.post("/schools", body)
    assert response.status_code == 409
    assert school.sender_address in response.json()["detail"]


# --- registrants ----------------------------------------------------------------------


def test_enrol_returns_login_id_and_a_working_registration_code(school_api: Api, school: School) -> None:
    response = school_api.post(
        "/registrants",
        {
            "school": school.pk,
            "child_name": "見守 花子",
            "child_name_kana": "みまもり はなこ",
            "grade": 2,
            "class_name": "1",
            "addresses": ["mama@docomo.ne.jp", None, "papa@ezweb.ne.jp"],
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    registrant = Registrant.objects.get(pk=body["id"])
    assert body["login_id"] == registrant.account.username
    assert registrant.registration_code_matches(body["registration_code"])
    assert body["addresses"] == [
        {"slot": 1, "email": "mama@docomo.ne.jp", "status": "ok"},
        {"slot": 2, "email": None, "status": None},
        {"slot": 3, "email": "papa@ezweb.ne.jp", "status": "ok"},
        {"slot": 4, "email": None, "status": None},
    ]
    assert body["receive_broadcasts"] is True
    assert body["created_at"].endswith("+09:00")


def test_invalid_addresses_are_refused_per_slot_in_japanese_and_nothing_is_created(
    school_api: Api, school: School
) -> None:
    body = {"school": school.pk, "child_name": "x", "grade": 1, "class_name": "1"}
    response = school_api.post("/registrants", {**body, "addresses": ["ok@docomo.ne.jp", BAD_DOTS]})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "addresses", 1]
    assert "連続" in error["msg"]
    assert not Registrant.objects.exists()
    assert not User.objects.filter(role="").exists()


def test_english_can_be_asked_for(school_api: Api, school: School) -> None:
    body = {"school": school.pk, "child_name": "x", "grade": 1, "class_name": "1", "addresses": [BAD_DOTS]}
    response = school_api.post("/registrants", body, **{"Accept-Language": "en"})
    assert "two dots in a row" in response.json()["detail"][0]["msg"]


def test_enrolling_at_another_school_is_404(school_api: Api) -> None:
    elsewhere = make_school()
    body = {"school": elsewhere.pk, "child_name": "x", "grade": 1, "class_name": "1"}
    assert school_api.post("/registrants", body).status_code == 404
    assert not Registrant.objects.exists()


def test_list_is_scoped_filtered_and_paged(school_api: Api, school: School) -> None:
    mine = [make_registrant(school, grade=g, class_name=c) for g, c in [(1, "1"), (1, "2"), (2, "1")]]
    make_registrant(make_school(), grade=1, class_name="1")
    everything = school_api.get("/registrants").json()
    assert everything["count"] == 3
    assert {r["id"] for r in everything["items"]} == {r.pk for r in mine}
    grade1 = school_api.get("/registrants?grade=1&class_name=2").json()
    assert [r["id"] for r in grade1["items"]] == [mine[1].pk]
    page = school_api.get(f"/registrants?school={school.pk}&limit=2&offset=2").json()
    assert page["count"] == 3
    assert len(page["items"]) == 1


def test_get_shows_slots_option_and_times_with_offset(school_api: Api, school: School) -> None:
    registrant = make_registrant(school, ["mama@docomo.ne.jp"], receive_broadcasts=False)
    body = school_api.get(f"/registrants/{registrant.pk}").json()
    assert body["addresses"][0] == {"slot": 1, "email": "mama@docomo.ne.jp", "status": "ok"}
    assert len(body["addresses"]) == 4
    assert body["receive_broadcasts"] is False
    assert body["status"] == "active"
    assert _has_offset(body["updated_at"])
    assert body["deregistered_at"] is None


def test_school_staff_cannot_reach_another_schools_registrant(school_api: Api) -> None:
    other = make_registrant(make_school(), ["mama@docomo.ne.jp"])
    refused = school_api.get(f"/registrants/{other.pk}")
    assert (refused.status_code, refused.json()) == (404, {"detail": "見つかりません。"})
    # The same words as for one that does not exist: nothing tells the two apart.
    assert school_api.get("/registrants/999999999").json() == refused.json()
    assert school_api.patch(f"/registrants/{other.pk}", {"receive_broadcasts": False}).status_code == 404
    assert school_api.post(f"/registrants/{other.pk}/deregister").status_code == 404
    other.refresh_from_db()
    assert other.receive_broadcasts is True
    assert other.status == RegistrantStatus.ACTIVE


# The worker calls close_old_connections(), which on PostgreSQL closes a connection held
# inside a test's transaction; tests that run it use real transactions instead.
@pytest.mark.django_db(transaction=True)
def test_patch_slot_2_sends_one_registration_mail_to_the_new_address(
    school_api: Api, school: School, smtp_sink: Sink
) -> None:
    registrant = make_registrant(school, ["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    response = school_api.patch(
        f"/registrants/{registrant.pk}",
        {"addresses": ["mama@docomo.ne.jp", "papa2@ezweb.ne.jp"], "receive_broadcasts": False},
    )
    assert response.status_code == 200, response.json()
    assert response.json()["addresses"][1]["email"] == "papa2@ezweb.ne.jp"
    run_queued_tasks()
    assert smtp_sink.copies() == {"papa2@ezweb.ne.jp": 1}
    (mail,) = smtp_sink.to("papa2@ezweb.ne.jp")
    assert "登録完了" in mail["Subject"]
    registrant.refresh_from_db()
    assert registrant.receive_broadcasts is False


@pytest.mark.django_db(transaction=True)
def test_invalid_patch_changes_nothing(school_api: Api, school: School, smtp_sink: Sink) -> None:
    registrant = make_registrant(school, ["mama@docomo.ne.jp"])
    response = school_api.patch(
        f"/registrants/{registrant.pk}",
        {"addresses": ["new@docomo.ne.jp", "abc.@ezweb.ne.jp"], "receive_broadcasts": False},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "addresses", 1]
    assert "直前" in response.json()["detail"][0]["msg"]
    registrant.refresh_from_db()
    assert registrant.addresses_by_slot()[1] == "mama@docomo.ne.jp"
    assert registrant.receive_broadcasts is True
    run_queued_tasks()
    assert not smtp_sink.copies()


def test_deregister_closes_the_guardian_login(school_api: Api, school: School) -> None:
    registrant = make_registrant(school, ["mama@docomo.ne.jp"])
    assert _can_log_in(registrant)
    response = school_api.post(f"/registrants/{registrant.pk}/deregister")
    assert response.status_code == 200
    shown = school_api.get(f"/registrants/{registrant.pk}").json()
    assert shown["status"] == "deregistered"
    assert _has_offset(shown["deregistered_at"])
    registrant.refresh_from_db()
    assert registrant.account.is_active is False
    assert not _can_log_in(registrant)
    refused = school_api.patch(f"/registrants/{registrant.pk}", {"receive_broadcasts": False})
    assert refused.status_code == 409
    assert "登録解除済み" in refused.json()["detail"]

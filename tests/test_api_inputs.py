"""Hostile input to the REST API (issue 13): every field obeys mimamori.text's rule.

A NUL byte, a line break in a one-line field, a lone surrogate, an integer beyond a bigint,
a body that is not JSON or not UTF-8 and a body that is too large are each refused with a
JSON {"detail"} and a 4xx, on SQLite and PostgreSQL alike, and nothing is changed.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone, translation

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts.models import Broadcast
from mimamori.maintenance.models import MaintenanceWindow
from mimamori.registry.models import Address, Municipality, Registrant, School
from mimamori.text import MAX_BIGINT, SINGLE_LINE_MESSAGE
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.test_api import Api

pytestmark = pytest.mark.django_db

HUGE = MAX_BIGINT + 1


@pytest.fixture
def city() -> Municipality:
    return make_municipality("minato")


@pytest.fixture
def school(city: Municipality) -> School:
    return make_school(city, name="港小学校", local="minato-es")


@pytest.fixture
def centre() -> Api:
    return Api(make_staff(Role.CENTRE))


def _rows() -> tuple[int, ...]:
    models = (Municipality, School, Registrant, Address, Broadcast, MaintenanceWindow, AuditEvent)
    return tuple(model.objects.count() for model in models)


def _refused(response: Any, *statuses: int) -> None:
    assert response.status_code in (statuses or (422,)), (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


def _municipality(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": "kita",
        "name": "北市",
        "mail_domain": "mail.kita.example.jp",
        "support_contact": {
            "name": "窓口",
            "phone": "0120-000-000",
            "email": "desk@kita.example.jp",
            "hours": "9-17",
        },
    }
    body.update(changes)
    return body


def _bodies(school: School, city: Municipality) -> list[tuple[str, str, Any]]:
    """(method, path, body) for every write with a text field, each with ``{bad}`` to fill."""
    start = (timezone.now() + timedelta(days=2)).isoformat()
    end = (timezone.now() + timedelta(days=2, hours=1)).isoformat()
    registrant = {"school": school.pk, "child_name": "太郎", "grade": 3, "class_name": "1"}
    broadcast = {"scope": {}, "subject": "件名", "body": "本文", "request_confirmation": False}
    window = {"starts_at": start, "ends_at": end, "message": "お知らせ"}
    return [
        ("post", "/municipalities", _municipality(code="{bad}")),
        ("post", "/municipalities", _municipality(name="{bad}")),
        ("post", "/municipalities", _municipality(mail_domain="{bad}")),
        ("post", "/municipalities", _municipality(support_contact={"name": "{bad}"})),
        ("post", "/municipalities", _municipality(support_contact={"phone": "{bad}"})),
        ("post", "/municipalities", _municipality(support_contact={"email": "{bad}"})),
        ("post", "/municipalities", _municipality(support_contact={"hours": "{bad}"})),
        ("post", "/schools", {"municipality": "{bad}", "name": "北小", "sender_local_part": "kita-es"}),
        ("post", "/schools", {"municipality": city.code, "name": "{bad}", "sender_local_part": "kita-es"}),
        ("post", "/schools", {"municipality": city.code, "name": "北小", "sender_local_part": "{bad}"}),
        ("post", "/registrants", {**registrant, "child_name": "{bad}"}),
        ("post", "/registrants", {**registrant, "child_name_kana": "{bad}"}),
        ("post", "/registrants", {**registrant, "class_name": "{bad}"}),
        ("post", "/registrants", {**registrant, "addresses": ["{bad}"]}),
        ("post", "/broadcasts", {**broadcast, "subject": "{bad}"}),
        ("post", "/broadcasts", {**broadcast, "body": "{bad}"}),
        ("post", "/broadcasts", {**broadcast, "scope": {"municipality": "{bad}"}}),
        ("post", "/broadcasts", {**broadcast, "scope": {"municipalities": ["{bad}"]}}),
        ("post", "/broadcasts", {**broadcast, "scope": {"classes": ["{bad}"]}}),
        ("post", "/maintenance-windows", {**window, "message": "{bad}"}),
        ("post", "/maintenance-windows", {**window, "municipalities": ["{bad}"]}),
    ]


def _fill(body: Any, bad: str) -> Any:
    if body == "{bad}":
        return f"a{bad}b"
    if isinstance(body, dict):
        return {key: _fill(value, bad) for key, value in body.items()}
    if isinstance(body, list):
        return [_fill(value, bad) for value in body]
    return body


def _each_write(school: School, city: Municipality, bad: str) -> list[tuple[str, str, str]]:
    """(method, path, raw JSON) with ``bad`` in one text field; json.dumps escapes it (\\u0000, \\ud800)."""
    return [(method, path, json.dumps(_fill(body, bad))) for method, path, body in _bodies(school, city)]


def _send(api: Api, method: str, path: str, raw: str | bytes) -> Any:
    send = getattr(api.client, method)
    return send(f"/api/v1{path}", data=raw, content_type="application/json", headers=api.headers)


@pytest.mark.parametrize(
    "bad",
    ["\x00", chr(0xD800), chr(0xDFFF), "\x7f", "\x85"],
    ids=["NUL", "lone-high-surrogate", "lone-low-surrogate", "DEL", "C1"],
)
def test_control_characters_and_lone_surrogates_are_refused_everywhere(
    centre: Api, school: School, city: Municipality, bad: str
) -> None:
    before = _rows()
    for method, path, raw in _each_write(school, city, bad):
        _refused(_send(centre, method, path, raw))
    make_registrant(school)
    registrant = Registrant.objects.get()
    before = _rows()
    patch = json.dumps({"addresses": [f"a{bad}@docomo.ne.jp"]})
    _refused(_send(centre, "patch", f"/registrants/{registrant.pk}", patch))
    assert _rows() == before


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\t", "\u2028"], ids=["CR", "LF", "CRLF", "TAB", "LS"])
def test_line_breaks_are_refused_in_one_line_fields(
    centre: Api, school: School, city: Municipality, bad: str
) -> None:
    before = _rows()
    for method, path, body in _bodies(school, city):
        if "{bad}" in (body.get("body"), body.get("message")):
            continue  # multi-line text: line breaks and tabs belong there
        _refused(_send(centre, method, path, json.dumps(_fill(body, bad))))
    assert _rows() == before


def test_line_breaks_are_kept_in_a_broadcast_body_and_a_maintenance_message(
    centre: Api, school: School
) -> None:
    created = centre.post(
        "/broadcasts",
        {
            "scope": {"schools": [school.pk]},
            "subject": "件名",
            "body": "一行目\r\n二行目\n\t三行目",
            "request_confirmation": False,
        },
    )
    assert created.status_code == 201, created.content
    assert "二行目" in created.json()["body"]


@pytest.mark.parametrize(
    "query",
    [
        "/registrants?class_name=a%00b",
        "/registrants?class_name=a%0Ab",
        "/audit-events?action=a%00b",
        "/audit-events?actor=a%00b",
        "/audit-events?target=a%00b",
        "/audit-events?target=a%0D%0Ab",
    ],
)
def test_control_characters_in_list_filters_are_refused(centre: Api, query: str) -> None:
    _refused(centre.get(query))


@pytest.mark.parametrize(
    "path",
    [
        f"/registrants/{HUGE}",
        f"/registrants/{10**30}",
        f"/broadcasts/{HUGE}",
        f"/broadcasts/{HUGE}/deliveries",
        f"/broadcasts/{HUGE}/receipts",
        f"/broadcasts/{HUGE}/reminders",
        f"/registrants?limit={HUGE}",
        f"/registrants?offset={HUGE}",
        f"/registrants?school={HUGE}",
        f"/registrants?grade={HUGE}",
        f"/broadcasts?offset={HUGE}",
        f"/broadcasts?limit={HUGE}",
        f"/audit-events?offset={HUGE}",
        "/registrants/0",
        "/registrants?offset=-1",
        "/registrants?limit=0",
    ],
)
def test_out_of_range_integers_in_paths_and_queries_are_refused(centre: Api, path: str) -> None:
    _refused(centre.get(path))


@pytest.mark.parametrize(
    "path",
    [
        "/registrants/{huge}/deregister",
        "/broadcasts/{huge}/send",
        "/broadcasts/{huge}/retry",
        "/broadcasts/{huge}/reminders",
    ],
)
def test_out_of_range_ids_in_posted_paths_are_refused(centre: Api, path: str) -> None:
    before = _rows()
    _refused(centre.post(path.format(huge=HUGE)))
    assert _rows() == before


def test_out_of_range_integers_in_bodies_are_refused(centre: Api, school: School, city: Municipality) -> None:
    before = _rows()
    registrant = {"school": school.pk, "child_name": "太郎", "grade": 3, "class_name": "1"}
    broadcast = {
        "scope": {"schools": [school.pk]},
        "subject": "件名",
        "body": "本文",
        "request_confirmation": True,
    }
    for path, body in [
        ("/registrants", {**registrant, "school": HUGE}),
        ("/registrants", {**registrant, "grade": HUGE}),
        ("/registrants", {**registrant, "grade": 2**31}),
        ("/broadcasts", {**broadcast, "scope": {"schools": [HUGE]}}),
        ("/broadcasts", {**broadcast, "scope": {"grades": [HUGE]}}),
        ("/broadcasts", {**broadcast, "reminder_minutes": [HUGE]}),
        ("/municipalities", _municipality(settings={"maintenance_notice_lead_hours": HUGE})),
        ("/municipalities", _municipality(settings={"maintenance_notice_lead_hours": 2**31})),
    ]:
        _refused(centre.post(path, body))
    assert _rows() == before


@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b"\xff\xfe{}", b'{"subject": "\xff"}', b"[]", b'"text"', b"null"]
)
def test_a_body_that_is_not_json_or_not_utf8_is_a_json_400(centre: Api, raw: bytes) -> None:
    before = _rows()
    _refused(_send(centre, "post", "/broadcasts", raw), 400, 422)
    assert _rows() == before


def test_a_body_that_is_not_json_is_400(centre: Api) -> None:
    _refused(_send(centre, "post", "/schools", b"{"), 400)
    _refused(_send(centre, "post", "/schools", b"\xff\xfe\x00"), 400)
    answer = _send(centre, "post", "/schools", b"{")
    assert answer.json() == {"detail": "リクエストの本文が UTF-8 の JSON ではありません。"}


def test_a_too_large_body_is_a_json_413(centre: Api, settings: Any) -> None:
    before = _rows()
    raw = json.dumps(
        {"scope": {}, "subject": "件名", "body": "あ" * 1_000_000, "request_confirmation": False}
    )
    assert len(raw.encode()) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    refused = _send(centre, "post", "/broadcasts", raw)
    _refused(refused, 413)
    assert _rows() == before
    # Read to its end all the same (core/limits.py): behind nginx, an unread body makes a 502.
    assert len(refused.wsgi_request.environ["wsgi.input"]) == 0


def test_a_too_large_body_without_a_token_is_still_json(settings: Any) -> None:
    raw = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)
    response = Client().post("/api/v1/broadcasts", data=raw, content_type="application/json")
    assert response.status_code in (401, 413)
    assert response.json()["detail"]


def test_over_long_values_are_refused(centre: Api, school: School, city: Municipality) -> None:
    before = _rows()
    registrant = {"school": school.pk, "child_name": "太郎", "grade": 3, "class_name": "1"}
    for path, body in [
        ("/municipalities", _municipality(name="あ" * 65)),
        ("/schools", {"municipality": city.code, "name": "あ" * 65, "sender_local_part": "kita"}),
        ("/registrants", {**registrant, "class_name": "1" * 17}),
        ("/registrants", {**registrant, "addresses": ["a@docomo.ne.jp"] * 5}),
        ("/broadcasts", {"scope": {}, "subject": "あ" * 151, "body": "本文", "request_confirmation": False}),
    ]:
        _refused(centre.post(path, body))
    assert _rows() == before


def test_refusals_are_in_the_users_language(centre: Api, school: School) -> None:
    body = {
        "scope": {"schools": [school.pk]},
        "subject": "件名\r\nBcc: x@example.com",
        "body": "本文",
        "request_confirmation": False,
    }
    response = centre.call("post", "/broadcasts", body, **{"Accept-Language": "ja"})
    _refused(response)
    messages = [item["msg"] for item in response.json()["detail"]]
    with translation.override("ja"):
        assert str(SINGLE_LINE_MESSAGE) in messages


@pytest.mark.parametrize(
    "query", ["date_to=9999-12-31", "date_from=0001-01-01", "date_from=0001-01-01&date_to=9999-12-31"]
)
def test_audit_days_at_the_ends_of_the_calendar_are_answered(centre: Api, query: str) -> None:
    # The day after 9999-12-31, or 0001-01-01 in Tokyo as UTC, cannot be a datetime: no 500.
    response = centre.get(f"/audit-events?{query}")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("query", ["date_to=0", "date_from=20240101", "date_to=2024-W01-1"])
def test_audit_days_are_only_yyyy_mm_dd(centre: Api, query: str) -> None:
    _refused(centre.get(f"/audit-events?{query}"))

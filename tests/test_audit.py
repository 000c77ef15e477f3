"""The audit log (P9): each audited action leaves exactly its event, with who, when, where
from and whose municipality; the log only grows; centre staff read all of it, municipality
staff their own, school staff none; no page or API call changes or removes an event."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from mimamori.accounts.models import Role, User
from mimamori.audit import log as audit
from mimamori.audit.models import AppendOnlyError, AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import Municipality, Registrant, School
from tests.cast import PASSWORD, make_municipality, make_registrant, make_school, make_staff
from tests.test_api import Api

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"
CLIENT_ADDRESS = "203.0.113.7"


def signed_in(user: User) -> Client:
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    client.force_login(user, backend=BACKEND)
    return client


def only(action: str) -> AuditEvent:
    """The one event of this action; fails if there are none or several."""
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, [str(e) for e in events]
    return events[0]


class Cast:
    def __init__(self) -> None:
        self.city_a: Municipality = make_municipality(name="岩見沢市")
        self.city_b: Municipality = make_municipality(name="滝川市")
        self.school_a: School = make_school(self.city_a, name="東小学校")
        self.school_b: School = make_school(self.city_b, name="北小学校")
        self.child_a: Registrant = make_registrant(self.school_a, ["a1@docomo.ne.jp"])
        self.centre: User = make_staff(Role.CENTRE)
        self.city_a_staff: User = make_staff(Role.MUNICIPALITY, municipality=self.city_a)
        self.school_a_staff: User = make_staff(Role.SCHOOL, school=self.school_a)


@pytest.fixture
def cast() -> Cast:
    return Cast()


def draft(user: User, **fields: Any) -> Broadcast:
    return sending.compose(
        user, subject="不審者情報", body="注意してください。", scope=resolve_scope(user), **fields
    )


# --- each wired action leaves its event -------------------------------------------------


def test_a_console_login_is_recorded_with_the_address_and_municipality(cast: Cast) -> None:
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    response = client.post(
        reverse("console:login"), {"username": cast.city_a_staff.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    event = only("login.succeeded")
    assert (event.actor, event.actor_name) == (cast.city_a_staff, cast.city_a_staff.username)
    assert event.ip_address == CLIENT_ADDRESS
    assert event.municipality == cast.city_a
    assert event.details == {"site": "console"}
    assert not AuditEvent.objects.filter(action="login.failed").exists()


def test_a_failed_login_names_the_login_id_tried(cast: Cast) -> None:
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    client.post(reverse("console:login"), {"username": cast.school_a_staff.username, "password": "wrong-1"})
    client.post(reverse("console:login"), {"username": "no-such-user", "password": "wrong-1"})
    events = list(AuditEvent.objects.filter(action="login.failed").order_by("pk"))
    assert [(e.actor, e.actor_name, e.ip_address) for e in events] == [
        (None, cast.school_a_staff.username, CLIENT_ADDRESS),
        (None, "no-such-user", CLIENT_ADDRESS),
    ]
    # An attempt on a real account belongs to its municipality; an unknown name to the centre.
    assert [e.municipality for e in events] == [cast.city_a, None]
    assert not AuditEvent.objects.filter(action="login.succeeded").exists()


def test_a_guardian_login_and_a_lockout_at_the_portal_are_recorded(cast: Cast) -> None:
    login_id = cast.child_a.login_id
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    assert (
        client.post(reverse("portal:login"), {"username": login_id, "password": PASSWORD}).status_code == 302
    )
    event = only("login.succeeded")
    assert (event.actor_name, event.municipality, event.details) == (
        login_id,
        cast.city_a,
        {"site": "portal"},
    )

    for _ in range(5):
        Client().post(reverse("portal:login"), {"username": login_id, "password": "wrong-password-1"})
    assert AuditEvent.objects.filter(action="login.failed", actor_name=login_id).count() == 5
    locked = only("login.locked_out")
    assert (locked.actor_name, locked.municipality) == (login_id, cast.city_a)


def test_sending_a_broadcast_from_the_console_is_recorded_once(cast: Cast) -> None:
    broadcast = draft(cast.school_a_staff)
    client = signed_in(cast.school_a_staff)
    client.post(reverse("console:broadcast_send", args=[broadcast.pk]))
    client.post(reverse("console:broadcast_send", args=[broadcast.pk]))  # not sent again: no event
    event = only("broadcast.sent")
    assert event.actor == cast.school_a_staff
    assert event.target == f"broadcast {broadcast.pk}"
    assert event.municipality == cast.city_a
    assert event.ip_address == CLIENT_ADDRESS
    assert event.details == {"subject": "不審者情報", "urgent": False}


def test_sending_a_broadcast_through_the_api_is_recorded(cast: Cast) -> None:
    broadcast = draft(cast.city_a_staff)
    response = Api(cast.city_a_staff).post(f"/broadcasts/{broadcast.pk}/send")
    assert response.status_code == 202
    event = only("broadcast.sent")
    assert (event.actor, event.municipality) == (cast.city_a_staff, cast.city_a)


def test_a_centre_broadcast_to_several_cities_belongs_to_the_centre(cast: Cast) -> None:
    scope = resolve_scope(cast.centre, municipality_codes=[cast.city_a.code, cast.city_b.code])
    broadcast = sending.compose(cast.centre, subject="臨時休校", body="明日は休校です。", scope=scope)
    sending.send(broadcast, by=cast.centre)
    event = only("broadcast.sent")
    assert (event.actor, event.municipality, event.ip_address) == (cast.centre, None, None)


def test_a_guardian_address_change_is_recorded_without_the_addresses(cast: Cast) -> None:
    client = Client(REMOTE_ADDR=CLIENT_ADDRESS)
    client.force_login(cast.child_a.account, backend=BACKEND)
    client.post(reverse("portal:addresses"), {"address1": "a1@docomo.ne.jp", "address2": "new@au.com"})
    event = only("registrant.addresses_changed")
    assert event.actor == cast.child_a.account
    assert event.target == f"registrant {cast.child_a.pk} ({cast.child_a.login_id})"
    assert (event.municipality, event.ip_address, event.details) == (
        cast.city_a,
        CLIENT_ADDRESS,
        {"slots": [2]},
    )
    # The log outlives erasure of personal data, so it holds no address.
    assert "new@au.com" not in str(event.details) + event.target

    client.post(reverse("portal:options"), {})
    option = only("registrant.option_changed")
    assert option.details == {"receive_broadcasts": False}


def test_staff_changes_and_enrolments_through_the_api_are_recorded(cast: Cast) -> None:
    api = Api(cast.school_a_staff)
    patched = api.patch(
        f"/registrants/{cast.child_a.pk}", {"addresses": ["a1@docomo.ne.jp", "b@ezweb.ne.jp"]}
    )
    assert patched.status_code == 200
    event = only("registrant.addresses_changed")
    assert (event.actor, event.municipality, event.details) == (
        cast.school_a_staff,
        cast.city_a,
        {"slots": [2]},
    )
    created = api.post(
        "/registrants",
        {
            "school": cast.school_a.pk,
            "child_name": "見守 次郎",
            "grade": 1,
            "class_name": "2",
            "addresses": [],
        },
    )
    assert created.status_code == 201
    enrolled = only("registrant.created")
    assert enrolled.target.startswith(f"registrant {created.json()['id']} ")


def test_a_roster_import_is_one_event_with_the_count(cast: Cast) -> None:
    roster = "学年,組,児童氏名,ふりがな\n1,1,見守 一郎,みまもり いちろう\n1,2,見守 二郎,みまもり じろう\n"
    client = signed_in(cast.school_a_staff)
    upload = StringIO(roster)
    upload.name = "roster.csv"
    response = client.post(reverse("console:roster_upload", args=[cast.school_a.pk]), {"file": upload})
    assert response.status_code == 200
    event = only("registrant.imported")
    assert (event.actor, event.target, event.details) == (
        cast.school_a_staff,
        f"school {cast.school_a.pk}",
        {"count": 2},
    )


def test_downloading_the_unconfirmed_csv_is_recorded(cast: Cast) -> None:
    broadcast = draft(cast.school_a_staff, request_confirmation=True)
    sending.send(broadcast, by=cast.school_a_staff)
    response = signed_in(cast.school_a_staff).get(
        reverse("console:broadcast_unconfirmed_csv", args=[broadcast.pk])
    )
    assert response.status_code == 200
    b"".join(response.streaming_content)  # type: ignore[attr-defined]
    event = only("export.unconfirmed_csv")
    assert (event.actor, event.target, event.municipality, event.ip_address) == (
        cast.school_a_staff,
        f"broadcast {broadcast.pk}",
        cast.city_a,
        CLIENT_ADDRESS,
    )


def test_issuing_a_token_and_creating_staff_by_command_are_recorded(cast: Cast) -> None:
    call_command("apitoken", cast.city_a_staff.username, stdout=StringIO(), stderr=StringIO())
    token = only("api_token.issued")
    assert token.target == f"user {cast.city_a_staff.username}"
    assert token.municipality == cast.city_a
    assert token.actor_name.endswith("(command)")
    call_command(
        "createstaff",
        "new-clerk",
        role="municipality",
        municipality=cast.city_b.code,
        password_stdin=True,
        stdin=StringIO("a-long-enough-passphrase\n"),
        stdout=StringIO(),
    )
    staff = only("staff.created")
    assert (staff.target, staff.municipality, staff.details) == (
        "user new-clerk",
        cast.city_b,
        {"role": "municipality"},
    )


# --- append-only ----------------------------------------------------------------------------


def test_events_cannot_be_updated_or_deleted() -> None:
    event = audit.record("test.event", actor_name="someone", target="thing 1")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(target="changed")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    event.target = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.target, stored.actor_name) == ("thing 1", "someone")


def test_the_admin_offers_no_way_to_change_events() -> None:
    if admin.site.is_registered(AuditEvent):
        model_admin = admin.site._registry[AuditEvent]
        assert not model_admin.has_change_permission(None)  # type: ignore[arg-type]
        assert not model_admin.has_delete_permission(None)  # type: ignore[arg-type]


def _concrete(route: str, ids: dict[str, int | str]) -> str:
    """A URL route with every parameter filled in: real ids where known, else words."""
    route = re.sub(r"<int:([^>]+)>", lambda m: str(ids.get(m.group(1), ids["other"])), route)
    route = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(ids.get(m.group(1), "x")), route)
    return route.lstrip("^").rstrip("$")


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            found += _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            found.append(prefix + str(entry.pattern))
    return found


def test_no_console_page_or_api_call_changes_or_removes_an_event(cast: Cast) -> None:
    event = audit.record("test.event", actor=cast.centre, target="thing 1", municipality=cast.city_a)
    broadcast = draft(cast.school_a_staff)
    ids: dict[str, int | str] = {
        "code": cast.city_a.code,
        "broadcast_id": broadcast.pk,
        "school_id": cast.school_a.pk,
        "registrant_id": cast.child_a.pk,
        "other": event.pk,
    }
    before = list(AuditEvent.objects.order_by("pk").values())
    routes = [r for r in _routes(get_resolver().url_patterns) if r.startswith(("console/", "api/v1/"))]
    routes.remove("console/logout/")  # would end the session the walk needs
    assert "console/audit/" in routes
    assert "api/v1/audit-events" in routes
    console = signed_in(cast.centre)
    console.raise_request_exception = False
    api = Api(cast.centre)
    api.client.raise_request_exception = False
    for route in routes:
        path = "/" + _concrete(route, ids)
        for method in ("post", "put", "patch", "delete"):
            count = AuditEvent.objects.count()
            if route.startswith("api/"):
                getattr(api.client, method)(
                    path, data={}, content_type="application/json", headers=api.headers
                )
            else:
                getattr(console, method)(path, data={"target": "changed", "action": "changed"})
            if route in ("console/audit/", "api/v1/audit-events"):
                assert AuditEvent.objects.count() == count, (method, path)
    # Other pages may add events (a send is audited) but every earlier event is as it was.
    after = list(AuditEvent.objects.order_by("pk").values())
    assert after[: len(before)] == before


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_the_audit_page_and_endpoint_answer_405_to_writes(cast: Cast, method: str) -> None:
    audit.record("test.event", target="thing 1")
    response = getattr(signed_in(cast.centre), method)(reverse("console:audit"))
    assert response.status_code == 405
    response = getattr(Api(cast.centre).client, method)(
        "/api/v1/audit-events", headers=Api(cast.centre).headers
    )
    assert response.status_code == 405
    assert AuditEvent.objects.filter(action="test.event").count() == 1


# --- who reads what ---------------------------------------------------------------------------


def test_centre_staff_see_all_and_can_search(cast: Cast) -> None:
    audit.record("broadcast.sent", actor=cast.city_a_staff, target="broadcast 1", municipality=cast.city_a)
    audit.record("broadcast.sent", actor_name="someone-b", target="broadcast 2", municipality=cast.city_b)
    audit.record("login.failed", actor_name="intruder", target="user intruder")
    client = signed_in(cast.centre)
    page = client.get(reverse("console:audit")).content.decode()
    assert "操作ログ" in page
    for name in ("someone-b", "intruder", cast.city_a_staff.username):
        assert name in page
    found = client.get(reverse("console:audit"), {"action": "broadcast.sent", "target": "broadcast 2"})
    text = found.content.decode()
    assert "someone-b" in text
    assert cast.city_a_staff.username not in text.split("<tbody>")[1]
    by_actor = client.get(reverse("console:audit"), {"actor": "intrud"}).content.decode()
    assert "intruder" in by_actor
    assert "someone-b" not in by_actor
    body = Api(cast.centre).get("/audit-events?action=login.failed").json()
    assert [item["actor"] for item in body["items"]] == ["intruder"]


def test_the_date_range_is_in_local_days(cast: Cast) -> None:
    audit.record("test.event", target="today")
    client = signed_in(cast.centre)
    assert "today" in client.get(reverse("console:audit"), {"date_from": "2000-01-01"}).content.decode()
    empty = client.get(reverse("console:audit"), {"date_to": "2000-01-01"}).content.decode()
    assert "today" not in empty.split("<tbody>")[1]


def test_the_calendar_s_first_and_last_days_search_the_whole_log(cast: Cast) -> None:
    audit.record("test.event", target="today")
    client = signed_in(cast.centre)
    page = client.get(reverse("console:audit"), {"date_from": "0001-01-01", "date_to": "9999-12-31"})
    assert page.status_code == 200
    assert "today" in page.content.decode().split("<tbody>")[1]


def test_municipality_staff_see_only_their_own_municipality(cast: Cast) -> None:
    audit.record("test.event", actor_name="someone-a", target="in city a", municipality=cast.city_a)
    audit.record("test.event", actor_name="someone-b", target="in city b", municipality=cast.city_b)
    audit.record("test.event", actor_name="centre-wide", target="everywhere")
    page = signed_in(cast.city_a_staff).get(reverse("console:audit")).content.decode()
    assert "in city a" in page
    assert "in city b" not in page
    assert "everywhere" not in page
    body = Api(cast.city_a_staff).get("/audit-events").json()
    assert {item["target"] for item in body["items"]} == {"in city a"} | {
        e.target for e in AuditEvent.objects.filter(municipality=cast.city_a).exclude(action="test.event")
    }


def test_school_staff_cannot_reach_the_log(cast: Cast) -> None:
    audit.record("test.event", target="in city a", municipality=cast.city_a)
    client = signed_in(cast.school_a_staff)
    assert client.get(reverse("console:audit")).status_code == 404
    assert 'href="/console/audit/"' not in client.get(reverse("console:home")).content.decode()
    assert Api(cast.school_a_staff).get("/audit-events").status_code == 403
    assert Client().get(reverse("console:audit")).status_code == 302  # to the login page

"""P9 / issue item 11: every console page, guardian page and API endpoint, walked by outsiders.

The walk is built from the URL configuration and the OpenAPI document, so a page or endpoint
added later is walked too; one whose URL takes an argument this file does not know fails the
test until someone says which object it should point at.
"""

from __future__ import annotations

import io
import mailbox
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from PIL import Image

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.broadcasts import mails as broadcast_mails
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.gates import readers
from mimamori.gates.models import GateReader
from mimamori.maintenance.models import MaintenanceWindow
from mimamori.quakes.models import AlertStatus, QuakeAlert
from mimamori.receipts.models import Receipt
from mimamori.registry import emblems, reachtests
from mimamori.registry.models import AlertTemplate, ReachTest, Registrant, School
from mimamori.support.models import Inquiry
from tests.cast import api_document, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

SECRET_CHILD = "秘密 花子"
SECRET_ADDRESS = "secret.mama@docomo.ne.jp"


@dataclass
class World:
    school_a: School
    registrant_a: Registrant
    broadcast_a: Broadcast
    mail_key_a: str
    inquiry_a: Inquiry
    window: MaintenanceWindow
    reach_test_a: ReachTest
    staff_a: User
    outsiders: dict[str, User | None]
    template_a: AlertTemplate
    quake_alert_a: QuakeAlert
    reader_a: GateReader


@pytest.fixture
def world(settings: Any, tmp_path: Path) -> World:
    city_a, city_b = make_municipality("city-a"), make_municipality("city-b")
    school_a = make_school(city_a, name="秘密小学校", local="himitsu")
    school_b = make_school(city_b, name="外部小学校", local="gaibu")
    registrant_a = make_registrant(school_a, [SECRET_ADDRESS], child_name=SECRET_CHILD)
    guardian_b = make_registrant(school_b, ["other@ezweb.ne.jp"]).account
    staff_a = make_staff(Role.SCHOOL, school=school_a)
    broadcast_a = sending.compose(
        staff_a,
        subject=SECRET_CHILD,
        body=SECRET_CHILD,
        scope=resolve_scope(staff_a, school_ids=[school_a.pk]),
    )

    # A mail from school A in the development mailbox.
    settings.DEVMAIL_ENABLED = True
    settings.DEVMAIL_DIR = tmp_path / "mailbox"
    box = mailbox.Maildir(settings.DEVMAIL_DIR, create=True)
    message = EmailMessage()
    message["From"] = f"{school_a.name} <{school_a.sender_address}>"
    message["To"] = SECRET_ADDRESS
    message["Subject"] = SECRET_CHILD
    message["X-Mimamori-Rcpt-To"] = SECRET_ADDRESS
    message.set_content(SECRET_CHILD)
    key = box.add(message)

    return World(
        school_a=school_a,
        registrant_a=registrant_a,
        broadcast_a=broadcast_a,
        mail_key_a=key,
        inquiry_a=Inquiry.objects.create(
            municipality=city_a,
            registrant=registrant_a,
            name=SECRET_CHILD,
            subject=SECRET_CHILD,
            body=SECRET_CHILD,
        ),
        window=MaintenanceWindow.objects.create(
            starts_at=timezone.now() + timedelta(days=1),
            ends_at=timezone.now() + timedelta(days=1, hours=2),
            message=SECRET_CHILD,
            created_by=make_staff(Role.CENTRE),
        ),
        # A 到達テスト of school A: its mail to the secret address is queued in the outbox.
        reach_test_a=reachtests.start(school_a, by=staff_a),
        staff_a=staff_a,
        outsiders={
            "anonymous": None,
            "guardian of another school": guardian_b,
            "school staff of another school": make_staff(Role.SCHOOL, school=school_b),
            "municipality staff of another city": make_staff(Role.MUNICIPALITY, municipality=city_b),
        },
        # An alert template of school A's city, with the secret in it.
        template_a=AlertTemplate.objects.create(
            municipality=city_a, name=SECRET_CHILD, subject=SECRET_CHILD, body=SECRET_CHILD
        ),
        # An earthquake alert of school A's city, held (its cancel button is live).
        quake_alert_a=QuakeAlert.objects.create(
            municipality=city_a,
            event_id="20261207110000",
            status=AlertStatus.HELD,
            kind="VXSE53",
            report_status="通常",
            info_type="発表",
            serial=1,
            reported_at=timezone.now(),
            headline=SECRET_CHILD,
            max_intensity="5-",
            places=[{"code": "0121000", "name": SECRET_CHILD, "intensity": "5-", "unreported": False}],
            hold_until=timezone.now() + timedelta(minutes=5),
        ),
        # A gate reader of school A, named with the secret (its revoke button is live).
        reader_a=readers.register(school_a, SECRET_CHILD, SECRET_CHILD, by=staff_a)[0],
    )


def _patterns(namespace: str) -> list[URLPattern]:
    resolver = get_resolver()
    found: list[URLPattern] = []
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == namespace:
            found.extend(p for p in entry.url_patterns if isinstance(p, URLPattern))
    assert found, namespace
    return found


def _kwargs(pattern: URLPattern, world: World) -> dict[str, object]:
    known: dict[str, object] = {
        "school_id": world.school_a.pk,
        "registrant_id": world.registrant_a.pk,
        "broadcast_id": world.broadcast_a.pk,
        "key": world.mail_key_a,
        "code": world.school_a.municipality.code,
        "inquiry_id": world.inquiry_a.pk,
        "window_id": world.window.pk,
        "name": "docomo",  # a carrier profile
        "reach_test_id": world.reach_test_a.pk,
        "user_id": world.staff_a.pk,
        "token": "not-a-reset-token-" + "x" * 25,
        "template_id": world.template_a.pk,
        "answer": 0,  # the first answer choice of broadcast_a (the answers' lists and CSV)
        "alert_id": world.quake_alert_a.pk,
        "reader_id": world.reader_a.pk,
    }
    names = list(pattern.pattern.regex.groupindex)
    unknown = [n for n in names if n not in known]
    assert not unknown, f"{pattern.name}: teach test_access which object {unknown} should point at"
    return {n: known[n] for n in names}


def _client(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _assert_reveals_nothing(response: Any, where: str) -> None:
    body = response.content.decode(errors="replace")
    assert SECRET_CHILD not in body, where
    assert SECRET_ADDRESS not in body, where
    assert "秘密小学校" not in body, where


PUBLIC = {"console:login", "portal:login", "portal:first_login"}
# The help page and the support desk's form answer anyone: a guardian who cannot log in needs them most.
PUBLIC |= {"portal:help", "portal:inquiry", "portal:inquiry_thanks"}
# Forgotten passwords (P11): the guardian's request and mailed link, the staff member's link.
PUBLIC |= {
    "portal:password_reset",
    "portal:password_reset_sent",
    "portal:password_reset_confirm",
    "console:password_reset_confirm",
}


# Pages for the support centre alone: other staff get a 404, as for an object out of their scope.
CENTRE_ONLY = {"console:maintenance_windows", "console:maintenance_new", "console:carrier_profiles"}
# The audit log: the centre and municipalities read it, school staff get a 404.
NOT_FOR_SCHOOL_STAFF = {"console:audit", "console:staff"}
# Templates are edited by municipality staff and the centre; school staff only use them.
NOT_FOR_SCHOOL_STAFF |= {"console:alert_template_new"}
# The earthquake page (alerts, settings, drills) is the centre's and the municipalities'.
NOT_FOR_SCHOOL_STAFF |= {"console:quakes"}


@pytest.mark.parametrize("namespace", ["console", "portal"])
def test_outsiders_reach_nothing_of_another_school(world: World, namespace: str) -> None:
    for pattern in _patterns(namespace):
        name = f"{namespace}:{pattern.name}"
        url = reverse(name, kwargs=_kwargs(pattern, world))
        for who, user in world.outsiders.items():
            for method in ("get", "post"):
                response = getattr(_client(user), method)(url)
                where = f"{method.upper()} {url} as {who}: {response.status_code}"
                _assert_reveals_nothing(response, where)
                if name in PUBLIC or response.status_code == 405:
                    continue  # a wrong method is refused before anything is looked up
                is_guardian = who == "guardian of another school"
                is_staff = who.startswith(("school staff", "municipality staff"))
                if namespace == "console" and (user is None or is_guardian):
                    assert response.status_code == 302, where
                    assert response["Location"].startswith(reverse("console:login")), where
                elif namespace == "portal" and not is_guardian:
                    assert response.status_code == 302, where
                    assert response["Location"].startswith(reverse("portal:login")), where
                elif (
                    namespace == "console"
                    and is_staff
                    and (pattern.pattern.regex.groupindex or name in CENTRE_ONLY)
                ):
                    # An object of another school: as if it did not exist.
                    assert response.status_code == 404, where
                elif name in NOT_FOR_SCHOOL_STAFF and who.startswith("school staff"):
                    assert response.status_code == 404, where
                else:
                    # Own-scope pages (lists, own guardian pages): allowed, and checked above
                    # to show nothing of school A.
                    assert response.status_code in {200, 302, 405}, where
    # Nobody outside started another 到達テスト of school A by posting to its page.
    assert ReachTest.objects.filter(school=world.school_a).count() == 1
    # Nor cancelled school A's city's earthquake alert, nor started a drill there.
    assert list(QuakeAlert.objects.values_list("status", flat=True)) == [AlertStatus.HELD]


def _api_url(path: str, world: World) -> str:
    return (
        path.replace("{registrant_id}", str(world.registrant_a.pk))
        .replace("{broadcast_id}", str(world.broadcast_a.pk))
        .replace("{code}", world.school_a.municipality.code)
        .replace("{reader_id}", str(world.reader_a.pk))
    )


def test_api_without_or_with_a_wrong_token_is_refused_everywhere(world: World) -> None:
    schema = api_document()
    operations = [(path, method) for path, item in schema["paths"].items() for method in item]
    assert len(operations) >= 8
    for headers in ({}, {"Authorization": "Bearer mmr_wrong"}, {"Authorization": "Basic abc"}):
        for path, method in operations:
            url = _api_url(path, world)
            response = getattr(Client(), method)(url, headers=headers, content_type="application/json")
            assert response.status_code == 401, f"{method} {url} {headers}: {response.status_code}"
            _assert_reveals_nothing(response, url)


def test_api_with_another_schools_token_reveals_nothing(world: World) -> None:
    schema = api_document()
    for who, user in world.outsiders.items():
        if user is None or not user.role:
            continue
        _token, raw = ApiToken.issue(user)
        headers = {"Authorization": f"Bearer {raw}"}
        for path, item in schema["paths"].items():
            for method in item:
                url = _api_url(path, world)
                assert "{" not in url, f"teach test_access the parameters of {path}"
                send = getattr(Client(), method)
                response = send(url, data={}, headers=headers, content_type="application/json")
                where = f"{method.upper()} {url} as {who}: {response.status_code}"
                _assert_reveals_nothing(response, where)
                if "{registrant_id}" in path or "{broadcast_id}" in path or "{reader_id}" in path:
                    assert response.status_code == 404, where
                elif path.endswith("/gate-events"):
                    assert response.status_code == 401, where  # a reader's token only
                else:
                    assert response.status_code in {200, 201, 403, 404, 409, 422}, where
    world.registrant_a.refresh_from_db()
    assert world.registrant_a.is_active
    world.broadcast_a.refresh_from_db()
    assert world.broadcast_a.status == BroadcastStatus.DRAFT
    assert world.registrant_a.addresses_by_slot()[1] == SECRET_ADDRESS
    world.reader_a.refresh_from_db()
    assert world.reader_a.is_active


def test_a_guardian_sees_only_their_own_child(world: World) -> None:
    other = make_registrant(world.school_a, ["own@ezweb.ne.jp"], child_name="自分 一郎")
    client = Client()
    client.force_login(other.account)
    for pattern in _patterns("portal"):
        if pattern.pattern.regex.groupindex:
            continue
        response = client.get(reverse(f"portal:{pattern.name}"), follow=True)
        _assert_reveals_nothing_but_school(response)


def _assert_reveals_nothing_but_school(response: Any) -> None:
    body = response.content.decode()
    assert SECRET_CHILD not in body
    assert SECRET_ADDRESS not in body


def _confirmation_token_of_school_a(world: World) -> str:
    staff_a = make_staff(Role.SCHOOL, school=world.school_a)
    broadcast = sending.compose(
        staff_a,
        subject="下校時のお知らせ",
        body="気をつけて下校してください。",
        scope=resolve_scope(staff_a, school_ids=[world.school_a.pk]),
        request_confirmation=True,
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    token = broadcast.deliveries.get(email=SECRET_ADDRESS).confirmation_token
    assert token
    return token


def _root_tokens(world: World) -> dict[str, str]:
    """For each root page, the token school A's mail carries for it."""
    confirmation = _confirmation_token_of_school_a(world)
    delivery = Delivery.objects.get(confirmation_token=confirmation)
    unsubscribe = broadcast_mails.unsubscribe_url(delivery.pk).rstrip("/").rpartition("/")[2]
    # The emblem of school A's city (core/emblem.py): public, its digest in place of a token.
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(png, format="PNG")
    emblem = emblems.change_emblem(world.school_a.municipality, png.getvalue(), by=world.staff_a)
    return {"confirm": confirmation, "unsubscribe": unsubscribe, "emblem": emblem.digest}


def _root_kwargs(name: str | None, value: str | None, world: World) -> dict[str, str | None]:
    if name == "emblem":
        return {"code": world.school_a.municipality.code, "digest": value}
    return {"token": value}


def test_root_pages_reveal_no_child_and_record_nothing(world: World, smtp_sink: Sink, settings: Any) -> None:
    """Pages at the root (the 受信確認 link /c/<token>/) need no login: the token in school A's
    mail is the capability. Whoever opens it sees what the mail says (school, subject, body),
    never a child or an address, and opening it records nothing; a wrong token reveals nothing."""
    settings.MIMAMORI_RETRY_BASE_SECONDS = 0
    tokens = _root_tokens(world)
    patterns = [p for p in get_resolver().url_patterns if isinstance(p, URLPattern) and p.name]
    assert {"confirm", "unsubscribe"} <= {p.name for p in patterns}
    for pattern in patterns:
        names = list(pattern.pattern.regex.groupindex)
        unknown = [
            n for n in names if n not in ({"code", "digest"} if pattern.name == "emblem" else {"token"})
        ]
        assert not unknown, f"{pattern.name}: teach test_access which object {unknown} should point at"
        assert not names or pattern.name in tokens, f"{pattern.name}: teach test_access its token"
        token = tokens.get(str(pattern.name), "")
        wrong = token[:-1] + ("a" if token[-1:] != "a" else "b")
        for who, user in world.outsiders.items():
            for value in (token, wrong) if names else (None,):
                url = reverse(pattern.name, kwargs=_root_kwargs(pattern.name, value, world) if names else {})
                for method in ("get", "head"):
                    response = getattr(_client(user), method)(url)
                    where = f"{method.upper()} {url} as {who}: {response.status_code}"
                    body = response.content.decode(errors="replace")
                    assert SECRET_CHILD not in body, where
                    assert SECRET_ADDRESS not in body, where
                    if value == wrong:
                        _assert_reveals_nothing(response, where)
                        assert response.status_code == 404, where
                    elif value == token:
                        assert response.status_code == 200, where
    assert not Receipt.objects.exists()
    assert not Registrant.objects.filter(receive_broadcasts=False).exists()

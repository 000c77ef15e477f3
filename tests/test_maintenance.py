"""Maintenance windows (S9): notices by mail at the lead time, again when moved or cancelled,
and the guardian site's 503 page during a window while confirmations and broadcasts go on.

The clock is explicit: notices are driven by due_notices(now=...) at chosen moments, and a
window that is "in force" is planned with plan(..., now=<an hour ago>) so that the real clock,
which the middleware reads, lies inside it. Nothing of our own is mocked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastKind, BroadcastStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.maintenance import windows
from mimamori.maintenance.models import MaintenanceNotice, MaintenanceWindow
from mimamori.maintenance.notices import due_notices
from mimamori.receipts.models import Receipt
from mimamori.registry.models import Municipality, Registrant, School
from mimamori.registry.registrants import deregister
from mimamori.tasking.sweep import sweep
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db

FOUR = ["a1@docomo.ne.jp", "a2@ezweb.ne.jp", "a3@softbank.ne.jp", "a4@example.jp"]
LINK = re.compile(r"http://\S+(/c/[0-9a-f]+/)")


@pytest.fixture
def centre() -> User:
    return make_staff(Role.CENTRE)


@pytest.fixture
def north() -> Municipality:
    return make_municipality("north", name="北市", maintenance_notice_lead_hours=48)


@pytest.fixture
def south() -> Municipality:
    return make_municipality("south", name="南市", maintenance_notice_lead_hours=24)


@pytest.fixture
def north_school(north: Municipality) -> School:
    return make_school(north, name="北小学校", local="kita-es")


def plan(centre: User, starts_in: timedelta, cities: Sequence[str] = (), **fields: Any) -> MaintenanceWindow:
    now = fields.pop("now", timezone.now())
    return windows.plan(
        centre,
        starts_at=now + starts_in,
        ends_at=now + starts_in + timedelta(hours=2),
        message=fields.pop("message", "システム更新のため停止します。"),
        municipality_codes=cities,
        now=now,
    )


def subjects(sink: Sink, address: str) -> list[str]:
    # A long subject starts its encoded words on the Subject line itself: nothing to strip.
    return [str(m["Subject"]) for m in sink.to(address)]


def body(mail: EmailMessage) -> str:
    part = mail.get_body()
    assert part is not None
    return str(part.get_content())


def test_notice_goes_at_the_lead_time_to_every_slot_of_active_registrants_only(
    centre: User, north: Municipality, south: Municipality, north_school: School, smtp_sink: Sink
) -> None:
    option_off = make_registrant(north_school, FOUR, receive_broadcasts=False, child_name="北 一郎")
    gone = make_registrant(north_school, ["gone@docomo.ne.jp"])
    deregister(gone)
    make_registrant(make_school(south), ["south@docomo.ne.jp"])
    window = plan(centre, timedelta(days=5), [north.code])
    lead = window.starts_at - timedelta(hours=48)

    assert due_notices(now=lead - timedelta(minutes=1)) == 0
    run_until_quiet()
    assert smtp_sink.copies() == {}

    assert due_notices(now=lead) == 1
    run_until_quiet()
    assert set(smtp_sink.copies()) == set(FOUR)  # slots 1–4, option off, no one deregistered or elsewhere
    mail = smtp_sink.to("a3@softbank.ne.jp")[0]
    assert subjects(smtp_sink, "a3@softbank.ne.jp")[0].startswith("【メンテナンスのお知らせ】")
    assert "kita-es@mail.north.example.jp" in str(mail["From"])
    text = body(mail)
    assert "システム更新のため停止します。" in text
    assert option_off.child_name in text
    when = timezone.localtime(window.starts_at)
    assert f"{when.month}月{when.day}日" in text
    assert f"{when:%H:%M}" in text

    # Later sweeps send nothing more: each address got exactly one copy.
    assert due_notices(now=lead + timedelta(hours=1)) == 0
    run_until_quiet()
    assert set(smtp_sink.copies().values()) == {1}
    broadcast = Broadcast.objects.get()
    assert broadcast.kind == BroadcastKind.MAINTENANCE
    assert broadcast.status == BroadcastStatus.SENT


def test_each_municipality_is_told_at_its_own_lead_time_and_the_sweep_sends_them(
    centre: User, north: Municipality, south: Municipality, north_school: School, smtp_sink: Sink
) -> None:
    make_registrant(north_school, ["n@docomo.ne.jp"])
    make_registrant(make_school(south), ["s@docomo.ne.jp"])
    window = plan(centre, timedelta(days=5))  # no municipality named: all of them
    assert due_notices(now=window.starts_at - timedelta(hours=30)) == 1
    run_until_quiet()
    assert set(smtp_sink.copies()) == {"n@docomo.ne.jp"}
    assert due_notices(now=window.starts_at - timedelta(hours=24)) == 1
    run_until_quiet()
    assert smtp_sink.copies() == {"n@docomo.ne.jp": 1, "s@docomo.ne.jp": 1}

    # The periodic sweep runs due_notices on the real clock: a window within the lead time.
    soon = plan(centre, timedelta(hours=3), [south.code])
    assert sweep()["maintenance_notices"] == 1
    run_until_quiet()
    assert smtp_sink.copies()["s@docomo.ne.jp"] == 2
    assert MaintenanceNotice.objects.filter(window=soon).count() == 1


def test_a_moved_window_is_told_again_and_a_cancelled_one_is_called_off(
    centre: User, north: Municipality, south: Municipality, north_school: School, smtp_sink: Sink
) -> None:
    make_registrant(north_school, ["n@docomo.ne.jp", "n2@docomo.ne.jp"])
    make_registrant(make_school(south), ["s@docomo.ne.jp"])
    window = plan(centre, timedelta(days=5))
    told_at = window.starts_at - timedelta(hours=48)
    due_notices(now=told_at)  # north (48 h) is told; south (24 h) not yet
    run_until_quiet()

    # A new message alone is no move: nobody is told again.
    assert windows.change(
        window,
        centre,
        starts_at=window.starts_at,
        ends_at=window.ends_at,
        message="更新内容を変更しました。",
        now=told_at,
    )
    assert due_notices(now=told_at) == 0

    later = window.starts_at + timedelta(hours=1)
    assert windows.change(
        window,
        centre,
        starts_at=later,
        ends_at=later + timedelta(hours=2),
        message="延期します。",
        now=told_at,
    )
    assert due_notices(now=told_at + timedelta(minutes=5)) == 1  # north at once; south still waits
    run_until_quiet()
    assert len(subjects(smtp_sink, "n@docomo.ne.jp")) == 2
    changed = smtp_sink.to("n2@docomo.ne.jp")[1]
    assert "日時変更" in str(changed["Subject"])
    moved_to = timezone.localtime(later)
    assert f"{moved_to:%H:%M}" in body(changed)
    assert smtp_sink.to("s@docomo.ne.jp") == []

    window.refresh_from_db()
    assert windows.cancel(window, centre, now=told_at + timedelta(hours=1))
    assert not windows.cancel(window, centre, now=told_at + timedelta(hours=1))
    assert due_notices(now=told_at + timedelta(hours=1)) == 1
    run_until_quiet()
    assert subjects(smtp_sink, "n@docomo.ne.jp")[2].startswith("【メンテナンス中止のお知らせ】")
    # South was never told, so it hears of no cancellation either; nothing more later.
    assert due_notices(now=later) == 0
    run_until_quiet()
    assert smtp_sink.to("s@docomo.ne.jp") == []
    assert smtp_sink.copies() == {"n@docomo.ne.jp": 3, "n2@docomo.ne.jp": 3}
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert [a for a in actions if a.startswith("maintenance.")] == [
        "maintenance.planned",
        "maintenance.changed",
        "maintenance.moved",
        "maintenance.cancelled",
    ]


def test_validation() -> None:
    centre = make_staff(Role.CENTRE)
    now = timezone.now()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"starts_at": now - timedelta(minutes=1)}, "starts_at"),
        ({"ends_at": now + timedelta(minutes=30)}, "ends_at"),
        ({"ends_at": now + timedelta(days=9)}, "ends_at"),
        ({"message": "  "}, "message"),
        ({"message": "あ" * 1001}, "message"),
        ({"municipality_codes": ["nowhere"]}, "municipalities"),
    ]
    for change, field in cases:
        fields: dict[str, Any] = {
            "starts_at": now + timedelta(hours=1),
            "ends_at": now + timedelta(hours=2),
            "message": "停止します。",
            **change,
        }
        with pytest.raises(ValidationError) as refused:
            windows.plan(centre, now=now, **fields)
        assert field in refused.value.message_dict
    assert not MaintenanceWindow.objects.exists()


# --- during the window ----------------------------------------------------------------------


def in_force(centre: User, cities: Sequence[str] = ()) -> MaintenanceWindow:
    """A window that began ten minutes ago and ends in fifty, planned an hour ago."""
    now = timezone.now()
    return windows.plan(
        centre,
        starts_at=now - timedelta(minutes=10),
        ends_at=now + timedelta(minutes=50),
        message="サーバー移転のため停止しています。",
        municipality_codes=cities,
        now=now - timedelta(hours=1),
    )


def guardian(registrant: Registrant) -> Client:
    client = Client()
    client.force_login(registrant.account)
    return client


PORTAL = ["portal:login", "portal:first_login", "portal:home", "portal:addresses", "portal:options"]


def test_guardian_pages_answer_503_while_confirmations_and_broadcasts_go_on(
    centre: User, north_school: School, smtp_sink: Sink
) -> None:
    registrant = make_registrant(north_school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=north_school)
    earlier = sending.compose(
        staff,
        subject="不審者情報",
        body="注意してください。",
        scope=resolve_scope(staff),
        request_confirmation=True,
    )
    sending.send(earlier)
    run_until_quiet()
    match = LINK.search(body(smtp_sink.to("one@docomo.ne.jp")[0]))
    assert match
    window = in_force(centre)

    client = guardian(registrant)
    for name in PORTAL:
        response = client.get(reverse(name))
        assert response.status_code == 503, name
        assert 2900 <= int(response["Retry-After"]) <= 3000
        page = response.content.decode()
        assert "メンテナンス中です" in page
        assert timezone.localtime(window.ends_at).strftime("%H:%M").lstrip("0") in page
        assert "サーバー移転のため停止しています。" in page
    posted = client.post(reverse("portal:addresses"), {"address1": "new@docomo.ne.jp"})
    assert posted.status_code == 503
    assert registrant.addresses_by_slot()[1] == "one@docomo.ne.jp"
    assert Client().get(reverse("portal:login")).status_code == 503

    # The confirmation link works.
    assert Client().post(match.group(1)).status_code == 303
    assert Receipt.objects.filter(broadcast=earlier, registrant=registrant).exists()
    # Staff send a broadcast from the console, and it arrives.
    console = Client()
    console.force_login(staff)
    draft = sending.compose(
        staff, subject="下校時刻の変更", body="本日は14時下校です。", scope=resolve_scope(staff)
    )
    sent = console.post(reverse("console:broadcast_send", args=[draft.pk]))
    assert sent.status_code == 302
    run_until_quiet()
    assert subjects(smtp_sink, "one@docomo.ne.jp")[-1] == "下校時刻の変更"


def test_outside_a_window_and_outside_its_municipalities_the_pages_work(
    centre: User, north: Municipality, south: Municipality, north_school: School
) -> None:
    north_guardian = guardian(make_registrant(north_school, ["n@docomo.ne.jp"]))
    south_guardian = guardian(make_registrant(make_school(south), ["s@docomo.ne.jp"]))
    plan(centre, timedelta(hours=1))  # not yet begun
    windows.cancel(in_force(centre), centre)  # cancelled
    for name in PORTAL[2:]:
        assert north_guardian.get(reverse(name)).status_code == 200
    in_force(centre, [north.code])
    assert north_guardian.get(reverse("portal:home")).status_code == 503
    assert south_guardian.get(reverse("portal:home")).status_code == 200
    # A visitor's municipality is unknown: only a window for every municipality closes login.
    assert Client().get(reverse("portal:login")).status_code == 200


# --- who may plan ---------------------------------------------------------------------------


def window_fields(days: int = 2) -> dict[str, str]:
    start = timezone.localtime() + timedelta(days=days)
    return {
        "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M"),
        "message": "定期メンテナンスです。",
    }


def test_the_centre_plans_moves_and_cancels_in_the_console(centre: User, north: Municipality) -> None:
    client = Client()
    client.force_login(centre)
    listing = client.get(reverse("console:maintenance_windows"))
    assert listing.status_code == 200
    assert "メンテナンス" in listing.content.decode()
    refused = client.post(
        reverse("console:maintenance_new"), {**window_fields(), "ends_at": "2020-01-01T00:00"}
    )
    assert "終了日時は開始日時より後にしてください。" in refused.content.decode()
    assert not MaintenanceWindow.objects.exists()

    created = client.post(
        reverse("console:maintenance_new"), {**window_fields(), "municipalities": [north.code]}
    )
    assert created.status_code == 302
    window = MaintenanceWindow.objects.get()
    assert [m.code for m in window.municipalities.all()] == [north.code]
    form = client.get(reverse("console:maintenance_edit", args=[window.pk])).content.decode()
    assert window_fields()["starts_at"] in form

    moved = client.post(reverse("console:maintenance_edit", args=[window.pk]), window_fields(days=3))
    assert moved.status_code == 302
    window.refresh_from_db()
    assert window.version == 2
    assert list(window.municipalities.all()) == []  # now every municipality
    client.post(reverse("console:maintenance_cancel", args=[window.pk]))
    window.refresh_from_db()
    assert window.is_cancelled
    page = client.get(reverse("console:maintenance_windows")).content.decode()
    assert "中止" in page
    events = AuditEvent.objects.filter(action__startswith="maintenance.", actor=centre)
    assert sorted(events.values_list("action", flat=True)) == [
        "maintenance.cancelled",
        "maintenance.moved",
        "maintenance.planned",
    ]


def test_other_staff_cannot_plan_in_the_console(
    centre: User, north: Municipality, north_school: School
) -> None:
    window = plan(centre, timedelta(days=1))
    for staff in (
        make_staff(Role.MUNICIPALITY, municipality=north),
        make_staff(Role.SCHOOL, school=north_school),
    ):
        client = Client()
        client.force_login(staff)
        assert "console/maintenance/" not in client.get(reverse("console:home")).content.decode()
        assert client.get(reverse("console:maintenance_windows")).status_code == 404
        assert client.post(reverse("console:maintenance_new"), window_fields()).status_code == 404
        assert client.post(reverse("console:maintenance_cancel", args=[window.pk])).status_code == 404
    window.refresh_from_db()
    assert not window.is_cancelled
    assert MaintenanceWindow.objects.count() == 1
    home = Client()
    home.force_login(centre)
    assert "/console/maintenance/" in home.get(reverse("console:home")).content.decode()


def test_the_api_plans_for_the_centre_only(centre: User, north: Municipality) -> None:
    start = timezone.now() + timedelta(days=2)
    payload = {
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
        "message": "定期メンテナンスです。",
        "municipalities": [north.code],
    }
    for staff in (make_staff(Role.MUNICIPALITY, municipality=north),):
        api = Api(staff)
        assert api.post("/maintenance-windows", payload).status_code == 403
        assert api.get("/maintenance-windows").status_code == 403
    assert not MaintenanceWindow.objects.exists()

    api = Api(centre)
    created = api.post("/maintenance-windows", payload)
    assert created.status_code == 201, created.content
    assert created.json()["municipalities"] == [north.code]
    assert created.json()["starts_at"].endswith("+09:00")
    listed = api.get("/maintenance-windows").json()
    assert [w["id"] for w in listed] == [created.json()["id"]]
    backwards = api.post("/maintenance-windows", {**payload, "ends_at": start.isoformat()})
    assert backwards.status_code == 422
    assert backwards.json()["detail"][0]["loc"] == ["body", "ends_at"]
    assert AuditEvent.objects.filter(action="maintenance.planned", actor=centre).count() == 1


def test_naive_times_are_local(centre: User) -> None:
    start = (timezone.localtime() + timedelta(days=1)).replace(tzinfo=None, microsecond=0)
    created = Api(centre).post(
        "/maintenance-windows",
        {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
            "message": "停止",
        },
    )
    assert created.status_code == 201
    window = MaintenanceWindow.objects.get()
    assert timezone.localtime(window.starts_at).replace(tzinfo=None) == start
    assert isinstance(window.starts_at, datetime)


# --- asking before a plan mails guardians at once (issue 14) --------------------------------


def test_a_window_inside_the_notice_period_asks_before_mailing_everyone(
    centre: User, north: Municipality, south: Municipality, north_school: School, smtp_sink: Sink
) -> None:
    make_registrant(north_school, ["a@docomo.ne.jp", "b@ezweb.ne.jp"])
    make_registrant(north_school, ["A@docomo.ne.jp", "c@gmail.com", "", "d@au.com"])  # a sibling
    make_registrant(make_school(south), ["s@docomo.ne.jp"])
    run_until_quiet()  # the registration mails
    before = len(smtp_sink.messages)
    client = Client()
    client.force_login(centre)
    soon = {**window_fields(days=1), "municipalities": [north.code]}  # north tells 48 h ahead

    asked = client.post(reverse("console:maintenance_new"), soon)
    assert asked.status_code == 200
    page = asked.content.decode()
    assert 'id="maintenance-confirm"' in page
    # a, b, c and d once each (A is a's address in other letters); none of the south's.
    assert "すぐに</strong> 4 件のアドレス" in page
    assert "北市" in page
    assert "南市" not in page.split('id="maintenance-confirm"')[1].split("</dl>")[0]
    assert not MaintenanceWindow.objects.exists()
    run_until_quiet()
    sweep()
    run_until_quiet()
    assert len(smtp_sink.messages) == before  # asking mailed nobody

    back = client.post(reverse("console:maintenance_new"), {**soon, "back": "1"})
    assert 'id="maintenance-confirm"' not in back.content.decode()
    assert "定期メンテナンスです。" in back.content.decode()
    assert not MaintenanceWindow.objects.exists()

    confirmed = client.post(reverse("console:maintenance_new"), {**soon, "confirmed": "1"})
    assert confirmed.status_code == 302
    assert MaintenanceWindow.objects.count() == 1
    assert "4 件のアドレスへ送信しています" in client.get(confirmed["Location"]).content.decode()
    sweep()
    run_until_quiet()
    assert len(smtp_sink.messages) == before + 4


def test_a_window_beyond_the_notice_period_is_planned_without_asking(
    centre: User, north: Municipality, north_school: School
) -> None:
    make_registrant(north_school, ["a@docomo.ne.jp"])
    client = Client()
    client.force_login(centre)
    later = {**window_fields(days=5), "municipalities": [north.code]}
    assert client.post(reverse("console:maintenance_new"), later).status_code == 302
    assert MaintenanceWindow.objects.count() == 1


def test_moving_a_window_guardians_were_told_about_asks_first(
    centre: User, north: Municipality, north_school: School
) -> None:
    make_registrant(north_school, ["a@docomo.ne.jp"])
    window = windows.plan(
        centre,
        starts_at=timezone.now() + timedelta(hours=30),
        ends_at=timezone.now() + timedelta(hours=33),
        message="定期メンテナンスです。",
        municipality_codes=[north.code],
    )
    due_notices()  # north told (48 h lead)
    client = Client()
    client.force_login(centre)
    moved = {**window_fields(days=4), "municipalities": [north.code]}  # beyond the lead time
    asked = client.post(reverse("console:maintenance_edit", args=[window.pk]), moved)
    assert "すぐに</strong> 1 件のアドレス" in asked.content.decode()
    window.refresh_from_db()
    assert window.version == 1
    done = client.post(reverse("console:maintenance_edit", args=[window.pk]), {**moved, "confirmed": "1"})
    assert done.status_code == 302
    window.refresh_from_db()
    assert window.version == 2

"""The broadcast that sends itself when the ground shakes (B10, issue 15 part C).

Reports are built here as the JMA parser (mimamori/quakes/jma.py) hands them over; the
broadcasts they raise go through the real fan-out and delivery into a real SMTP sink.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts.models import Broadcast, BroadcastStatus
from mimamori.mail.models import OutgoingMail
from mimamori.quakes import alerts
from mimamori.quakes.jma import InfoType, Kind, Place, Report, Status
from mimamori.quakes.models import AlertStatus, EarthquakeSettings, QuakeAlert
from mimamori.registry.answers import SAFETY
from mimamori.registry.models import Municipality, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks, run_until_quiet

pytestmark = pytest.mark.django_db

IWAMIZAWA, TAKIKAWA, YUBARI = "0121000", "0122500", "0120900"


def report(
    cities: list[Place] | None = None,
    *,
    event_id: str = "20261207110000",
    serial: int = 1,
    status: Status = Status.NORMAL,
    info_type: InfoType = InfoType.ISSUED,
    kind: Kind = Kind.DETAIL,
    areas: list[Place] | None = None,
) -> Report:
    now = timezone.now()
    return Report(
        kind=kind,
        status=status,
        info_type=info_type,
        event_id=event_id,
        serial=serial,
        title="震源・震度情報",
        reported_at=now,
        headline="７日１１時００分ころ、地震がありました。",
        origin_time=now - timedelta(minutes=2),
        hypocentre="石狩地方中部",
        magnitude="5.4",
        cities=cities if cities is not None else [],
        areas=areas if areas is not None else [],
    )


def city(code: str, intensity: str, *, unreported: bool = False) -> Place:
    names = {IWAMIZAWA: "岩見沢市", TAKIKAWA: "滝川市", YUBARI: "夕張市"}
    return Place(code=code, name=names[code], intensity=intensity, unreported=unreported)


class Seed:
    """岩見沢市 (two schools, configured) and 滝川市 (one school, configured for its own city)."""

    def __init__(self, hold_seconds: int = 0) -> None:
        self.iwamizawa = make_municipality("iwamizawa", name="岩見沢市")
        self.takikawa = make_municipality("takikawa", name="滝川市")
        self.schools = [make_school(self.iwamizawa), make_school(self.iwamizawa)]
        self.takikawa_school = make_school(self.takikawa)
        for n, school in enumerate([*self.schools, self.takikawa_school]):
            make_registrant(school, [f"parent{n}@docomo.ne.jp"])
        self.staff = make_staff(Role.MUNICIPALITY, municipality=self.iwamizawa)
        self.staff.email = "bousai@city.iwamizawa.example.jp"
        self.staff.save()
        EarthquakeSettings.objects.create(
            municipality=self.iwamizawa, city_codes=[IWAMIZAWA], hold_seconds=hold_seconds
        )
        EarthquakeSettings.objects.create(municipality=self.takikawa, city_codes=[TAKIKAWA])
        run_until_quiet()  # the 登録完了メール
        OutgoingMail.objects.all().delete()


def guardian_mails(sink: Sink, seed: Seed) -> list[str]:
    return sorted(r for r, _m in sink.messages if r.startswith("parent"))


def plain(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def staff_notices(municipality: Municipality) -> list[OutgoingMail]:
    return list(OutgoingMail.objects.filter(kind="quake_notice", municipality=municipality).order_by("pk"))


def test_5_lower_in_iwamizawa_sends_one_broadcast_to_every_school_of_iwamizawa_only(smtp_sink: Sink) -> None:
    seed = Seed()
    touched = alerts.receive(report([city(IWAMIZAWA, "5-"), city(TAKIKAWA, "4")]))
    run_until_quiet()

    (alert,) = touched
    assert alert.municipality == seed.iwamizawa
    assert alert.status == AlertStatus.SENT
    broadcast = Broadcast.objects.get()
    assert broadcast == alert.broadcast
    assert broadcast.urgent
    assert broadcast.answers == SAFETY
    assert broadcast.request_confirmation
    assert list(broadcast.municipalities.all()) == [seed.iwamizawa]
    assert broadcast.created_by.username == alerts.SYSTEM_USERNAME
    assert not broadcast.created_by.is_active
    assert not broadcast.created_by.has_usable_password()
    assert broadcast.subject == "【安否確認】岩見沢市で震度5弱の地震がありました"
    assert "岩見沢市で震度5弱の地震がありました。" in broadcast.body
    # Both schools of 岩見沢市, none of 滝川市 (4 is below its threshold).
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]
    # Staff are told: the municipality's staff member and its support desk.
    told = staff_notices(seed.iwamizawa)
    assert sorted(m.to for m in told) == ["bousai@city.iwamizawa.example.jp", "support@iwamizawa.example.jp"]
    (notice,) = smtp_sink.to("bousai@city.iwamizawa.example.jp")
    assert notice["Subject"] == "【地震】岩見沢市：安否確認を送信しました（震度5弱）"
    text = plain(notice)
    assert "岩見沢市: 震度5弱" in text
    assert "地震ID: 20261207110000" in text
    assert "無事です / けがをしています / 支援が必要です" in text
    assert not staff_notices(seed.takikawa)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"quake.alert_raised", "broadcast.sent"} <= actions


def test_the_same_report_again_and_a_stronger_serial_2_never_send_again(smtp_sink: Sink) -> None:
    seed = Seed()
    first = report([city(IWAMIZAWA, "5-")])
    alerts.receive(first)
    run_until_quiet()
    mailed = len(smtp_sink.messages)

    # The same EventID and serial again (the feed and a file, say): nothing new at all.
    alerts.receive(first)
    run_until_quiet()
    assert len(smtp_sink.messages) == mailed
    assert QuakeAlert.objects.count() == Broadcast.objects.count() == 1
    assert len(QuakeAlert.objects.get().history) == 1

    # Serial 2 with 5強: the record is updated and staff told, no second send.
    alerts.receive(report([city(IWAMIZAWA, "5+")], serial=2))
    run_until_quiet()
    alert = QuakeAlert.objects.get()
    assert (alert.serial, alert.max_intensity, alert.status) == (2, "5+", AlertStatus.SENT)
    assert alert.places[0]["intensity"] == "5+"
    assert [h["serial"] for h in alert.history] == [1, 2]
    assert Broadcast.objects.count() == 1
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]
    updates = smtp_sink.to("bousai@city.iwamizawa.example.jp")
    assert updates[-1]["Subject"] == "【地震・続報】岩見沢市：震度5強（第2報）"
    body = plain(updates[-1])
    assert "最大震度は5弱から5強に変わりました" in body
    assert "もう一度は送信しません" in body
    assert AuditEvent.objects.filter(action="quake.alert_updated").count() == 1


def test_below_the_threshold_or_in_a_city_not_configured_nothing_happens(smtp_sink: Sink) -> None:
    Seed()
    assert alerts.receive(report([city(IWAMIZAWA, "4")])) == []
    assert alerts.receive(report([city(YUBARI, "6+")], event_id="2")) == []
    run_until_quiet()
    assert not QuakeAlert.objects.exists()
    assert not Broadcast.objects.exists()
    assert not smtp_sink.messages
    assert not OutgoingMail.objects.exists()


@pytest.mark.parametrize("status", [Status.DRILL, Status.TEST])
def test_a_drill_or_test_document_reaches_staff_only(smtp_sink: Sink, status: Status) -> None:
    seed = Seed()
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "6-")], status=status))
    run_until_quiet()
    assert alert.drill
    assert alert.status == AlertStatus.DRILL
    assert not Broadcast.objects.exists()
    assert guardian_mails(smtp_sink, seed) == []
    (notice,) = smtp_sink.to("bousai@city.iwamizawa.example.jp")
    assert notice["Subject"] == "【訓練】【安否確認】岩見沢市で震度6弱の地震がありました"
    text = plain(notice)
    assert "これは訓練です。保護者には送信していません。" in text
    assert "岩見沢市で震度6弱の地震がありました。" in text
    # A real report of the same EventID is a different matter: it still sends.
    alerts.receive(report([city(IWAMIZAWA, "6-")]))
    assert Broadcast.objects.count() == 1


def test_unreported_5_lower_or_more_counts_as_5_lower(smtp_sink: Sink) -> None:
    seed = Seed()
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "5-", unreported=True)]))
    run_until_quiet()
    assert alert.status == AlertStatus.SENT
    assert alert.broadcast is not None
    assert alert.broadcast.subject == "【安否確認】岩見沢市で震度5弱以上の地震がありました"
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]


def test_an_area_counts_only_where_configured(smtp_sink: Sink) -> None:
    seed = Seed()
    area = Place(code="135", name="石狩地方南部", intensity="5+")
    assert alerts.receive(report(kind=Kind.FLASH, areas=[area])) == []
    EarthquakeSettings.objects.filter(municipality=seed.iwamizawa).update(area_codes=["135"])
    (alert,) = alerts.receive(report(kind=Kind.FLASH, areas=[area]))
    assert alert.status == AlertStatus.SENT
    assert alert.places[0]["name"] == "石狩地方南部"


def test_a_cancellation_during_the_hold_sends_nothing(smtp_sink: Sink) -> None:
    seed = Seed(hold_seconds=60)
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "5+")]))
    run_until_quiet()
    assert alert.status == AlertStatus.HELD
    assert alert.broadcast is not None
    assert alert.broadcast.status == BroadcastStatus.SCHEDULED
    (held,) = smtp_sink.to("bousai@city.iwamizawa.example.jp")
    assert held["Subject"].startswith("【地震】岩見沢市：震度5強、安否確認を")

    (_withdrawn,) = alerts.receive(report(info_type=InfoType.CANCELLED, serial=2))
    run_until_quiet()
    alert.refresh_from_db()
    assert alert.status == AlertStatus.CANCELLED
    assert alert.cancelled_by is None
    assert alert.broadcast is not None
    assert alert.broadcast.status == BroadcastStatus.CANCELLED
    # Even once the hold is over, nothing goes.
    assert alerts.release_due(timezone.now() + timedelta(minutes=2)) == 0
    run_until_quiet()
    assert guardian_mails(smtp_sink, seed) == []
    last = smtp_sink.to("bousai@city.iwamizawa.example.jp")[-1]
    assert last["Subject"] == "【地震・取消】岩見沢市：気象庁が情報を取り消したため、送信しませんでした"
    assert AuditEvent.objects.filter(action="quake.alert_withdrawn").exists()


def test_a_cancellation_after_sending_tells_staff_only(smtp_sink: Sink) -> None:
    seed = Seed()
    alerts.receive(report([city(IWAMIZAWA, "5-")]))
    run_until_quiet()
    alerts.receive(report(info_type=InfoType.CANCELLED, serial=2))
    run_until_quiet()
    assert QuakeAlert.objects.get().status == AlertStatus.SENT
    last = smtp_sink.to("bousai@city.iwamizawa.example.jp")[-1]
    assert last["Subject"] == "【地震・取消】岩見沢市：気象庁が情報を取り消しました（送信済み）"
    assert len(guardian_mails(smtp_sink, seed)) == 2


def _first_guardian_mail_at(seed: Seed) -> datetime | None:
    from mimamori.broadcasts.models import Delivery

    return (
        Delivery.objects.filter(accepted_at__isnull=False)
        .order_by("accepted_at")
        .values_list("accepted_at", flat=True)
        .first()
    )


def test_a_hold_leaves_on_time(smtp_sink: Sink) -> None:
    seed = Seed(hold_seconds=1)
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "5-")]))
    assert alert.hold_until is not None
    run_queued_tasks()
    assert guardian_mails(smtp_sink, seed) == []  # not before the hold's end
    time.sleep(max(0.0, (alert.hold_until - timezone.now()).total_seconds()) + 0.05)
    run_until_quiet()  # the release task, queued to run at the hold's end
    alert.refresh_from_db()
    assert alert.status == AlertStatus.SENT
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]
    first = _first_guardian_mail_at(seed)
    assert first is not None
    assert first - alert.hold_until < timedelta(seconds=2)
    assert AuditEvent.objects.filter(action="quake.alert_released").exists()


def test_staff_cancel_during_the_hold_from_the_console(smtp_sink: Sink) -> None:
    seed = Seed(hold_seconds=120)
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "5-")]))
    client = Client()
    client.force_login(seed.staff)
    page = client.get(reverse("console:quakes"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "20261207110000" in html
    assert reverse("console:quake_cancel", args=[alert.pk]) in html

    # Another municipality's staff do not reach it.
    outsider = Client()
    outsider.force_login(make_staff(Role.MUNICIPALITY, municipality=seed.takikawa))
    assert outsider.post(reverse("console:quake_cancel", args=[alert.pk])).status_code == 404
    # GET never acts.
    assert client.get(reverse("console:quake_cancel", args=[alert.pk])).status_code == 405

    assert client.post(reverse("console:quake_cancel", args=[alert.pk])).status_code == 302
    alert.refresh_from_db()
    assert alert.status == AlertStatus.CANCELLED
    assert alert.cancelled_by == seed.staff
    assert alert.broadcast is not None
    assert alert.broadcast.status == BroadcastStatus.CANCELLED
    event = AuditEvent.objects.get(action="quake.alert_cancelled")
    assert event.actor == seed.staff
    alerts.release_due(timezone.now() + timedelta(minutes=5))
    run_until_quiet()
    assert guardian_mails(smtp_sink, seed) == []
    assert smtp_sink.to("bousai@city.iwamizawa.example.jp")[-1]["Subject"] == (
        "【地震】岩見沢市：安否確認の送信を取り消しました"
    )
    # Too late now: a second cancel changes nothing.
    assert not alerts.cancel(alert, seed.staff)


def test_a_drill_by_hand_mails_staff_what_guardians_would_get(smtp_sink: Sink) -> None:
    seed = Seed()
    client = Client()
    client.force_login(seed.staff)
    response = client.post(reverse("console:quake_drill", args=[seed.iwamizawa.code]))
    assert response.status_code == 302
    run_until_quiet()
    alert = QuakeAlert.objects.get()
    assert alert.drill
    assert alert.started_by == seed.staff
    assert not Broadcast.objects.exists()
    assert guardian_mails(smtp_sink, seed) == []
    (notice,) = smtp_sink.to("bousai@city.iwamizawa.example.jp")
    assert notice["Subject"] == "【訓練】【安否確認】岩見沢市で震度5弱の地震がありました"
    assert AuditEvent.objects.get(action="quake.drill").actor == seed.staff
    # School staff have no earthquake page.
    school_staff = Client()
    school_staff.force_login(make_staff(Role.SCHOOL, school=seed.schools[0]))
    assert school_staff.get(reverse("console:quakes")).status_code == 404


def test_a_municipality_without_registrants_gets_no_empty_broadcast(smtp_sink: Sink) -> None:
    empty = make_municipality("yubari", name="夕張市")
    School.objects.create(municipality=empty, name="夕張小学校", sender_local_part="yubari-sho")
    EarthquakeSettings.objects.create(municipality=empty, city_codes=[YUBARI])
    (alert,) = alerts.receive(report([city(YUBARI, "5-")]))
    assert alert.status == AlertStatus.UNSENT
    assert alert.broadcast is None
    assert not Broadcast.objects.exists()


def test_settings_are_edited_on_the_console_and_audited() -> None:
    seed = Seed()
    client = Client()
    client.force_login(seed.staff)
    url = reverse("console:quake_settings", args=[seed.iwamizawa.code])
    assert client.get(url).status_code == 200
    form = {
        "city_codes": "0121000 0120900",
        "area_codes": "",
        "threshold": "5+",
        "hold_seconds": "30",
        "subject": "【安否確認】{場所} 震度{震度}",
        "body": "{発生時刻}ごろ地震がありました。回答してください。",
        "answers": "無事です\n支援が必要です",
        "tell_municipality_staff": "on",
        "tell_support_desk": "on",
    }
    assert client.post(url, form).status_code == 302
    config = EarthquakeSettings.objects.get(municipality=seed.iwamizawa)
    assert (config.city_codes, config.threshold, config.hold_seconds) == ([IWAMIZAWA, YUBARI], "5+", 30)
    assert config.answers == ["無事です", "支援が必要です"]
    assert AuditEvent.objects.filter(action="quake.settings_changed").count() == 1
    wrong = client.post(url, {**form, "city_codes": "121000", "subject": "{場所}{規模}"})
    assert wrong.status_code == 400
    text = wrong.content.decode()
    assert "121000 は市町村コードではありません" in text
    assert "{規模} は差し込み項目ではありません" in text


# --- the settings through the API ----------------------------------------------------------


def test_the_api_round_trips_the_earthquake_settings() -> None:
    from tests.test_api import Api

    centre = Api(make_staff(Role.CENTRE))
    earthquake = {"city_codes": [IWAMIZAWA], "threshold": "5+", "hold_seconds": 30}
    created = centre.post(
        "/municipalities",
        {
            "code": "iwamizawa",
            "name": "岩見沢市",
            "mail_domain": "mail.iwamizawa.example.jp",
            "settings": {"earthquake": earthquake},
        },
    )
    assert created.status_code == 201, created.json()
    assert created.json()["settings"]["earthquake"] == earthquake
    config = EarthquakeSettings.objects.get(municipality__code="iwamizawa")
    assert (config.city_codes, config.threshold, config.hold_seconds) == ([IWAMIZAWA], "5+", 30)
    assert config.answers == SAFETY
    (listed,) = centre.get("/municipalities").json()
    assert listed["settings"]["earthquake"] == earthquake

    # Without settings: off, 5弱, at once.
    plain_city = centre.post("/municipalities", {"code": "c2", "name": "x", "mail_domain": "x.example.jp"})
    assert plain_city.json()["settings"]["earthquake"] == {
        "city_codes": [],
        "threshold": "5-",
        "hold_seconds": 0,
    }

    # Changed later, by the centre, audited.
    changed = centre.call(
        "put", "/municipalities/iwamizawa/earthquake", {"city_codes": [IWAMIZAWA, YUBARI], "threshold": "5-"}
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json() == {"city_codes": [IWAMIZAWA, YUBARI], "threshold": "5-", "hold_seconds": 0}
    assert AuditEvent.objects.get(action="quake.settings_changed").details["changes"]["threshold"] == [
        "5+",
        "5-",
    ]


def test_the_api_refuses_bad_codes_and_thresholds_in_japanese() -> None:
    from tests.test_api import Api

    centre = Api(make_staff(Role.CENTRE))

    def create(earthquake: object) -> list[dict[str, object]]:
        response = centre.post(
            "/municipalities",
            {
                "code": "bad",
                "name": "x",
                "mail_domain": "x.example.jp",
                "settings": {"earthquake": earthquake},
            },
        )
        assert response.status_code == 422
        assert not Municipality.objects.filter(code="bad").exists()
        detail: list[dict[str, object]] = response.json()["detail"]
        return detail

    (bad_code,) = create({"city_codes": ["121000"]})
    assert bad_code["loc"] == ["body", "settings", "earthquake", "city_codes", 0]
    assert bad_code["msg"] == (
        "121000 は市町村コードではありません。気象庁の市町村コードは7桁の数字です（岩見沢市は 0121000）。"
    )
    (bad_threshold,) = create({"threshold": "5"})
    assert bad_threshold["loc"] == ["body", "settings", "earthquake", "threshold"]
    assert str(bad_threshold["msg"]).endswith("のいずれかを指定してください。")
    (twice,) = create({"city_codes": [IWAMIZAWA, IWAMIZAWA]})
    assert twice["msg"] == "同じコードが2回入力されています。"
    (too_long,) = create({"hold_seconds": 601})
    assert too_long["msg"] == "600 以下の数を入力してください。"

    # Out of scope: another municipality's staff get 404, school staff 403.
    city = make_municipality("iwamizawa")
    other = Api(make_staff(Role.MUNICIPALITY, municipality=make_municipality("takikawa")))
    assert other.call("put", f"/municipalities/{city.code}/earthquake", {}).status_code == 404
    school_staff = Api(make_staff(Role.SCHOOL, school=make_school(city)))
    refused = school_staff.call("put", f"/municipalities/{city.code}/earthquake", {})
    assert refused.status_code == 403
    assert "サポートセンターとその市町村の職員だけ" in refused.json()["detail"]
    own = Api(make_staff(Role.MUNICIPALITY, municipality=city))
    assert (
        own.call("put", f"/municipalities/{city.code}/earthquake", {"city_codes": [IWAMIZAWA]}).status_code
        == 200
    )


def test_the_console_home_shows_a_held_alert() -> None:
    seed = Seed(hold_seconds=120)
    client = Client()
    client.force_login(seed.staff)
    assert "quake-held" not in client.get(reverse("console:home")).content.decode()
    (alert,) = alerts.receive(report([city(IWAMIZAWA, "5-")]))
    home = client.get(reverse("console:home")).content.decode()
    assert f'data-held="{alert.pk}"' in home
    assert "岩見沢市：震度5弱。安否確認を" in home
    # Not to another municipality's staff.
    other = Client()
    other.force_login(make_staff(Role.MUNICIPALITY, municipality=seed.takikawa))
    assert "quake-held" not in other.get(reverse("console:home")).content.decode()


def test_the_demo_cities_get_their_earthquake_settings_once() -> None:
    from mimamori.quakes.demo import configure_demo

    make_municipality("iwamizawa", name="岩見沢市")
    make_municipality("takikawa", name="滝川市")
    assert configure_demo() == 2
    assert configure_demo() == 0
    config = EarthquakeSettings.objects.get(municipality__code="iwamizawa")
    assert (config.city_codes, config.hold_seconds) == ([IWAMIZAWA], 60)


@pytest.mark.django_db(transaction=True)
def test_the_same_report_from_two_workers_at_once_makes_one_alert(smtp_sink: Sink) -> None:
    """The feed and a file (or two machines) with the same document at the same moment: the
    unique (municipality, EventID) constraint lets one raise the alert; the other finds it."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite runs one writer at a time; the race needs PostgreSQL")
    Seed()
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            barrier.wait(timeout=10)
            alerts.receive(report([city(IWAMIZAWA, "5-")]))
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    alert = QuakeAlert.objects.get()
    assert len(alert.history) == 1
    assert Broadcast.objects.count() == 1
    assert AuditEvent.objects.filter(action="quake.alert_raised").count() == 1


def test_the_earthquake_page_reads_a_fixed_number_of_queries(django_assert_max_num_queries: Any) -> None:
    seed = Seed()
    for n in range(5):
        alerts.start_drill(seed.iwamizawa, seed.staff)
        alerts.receive(report([city(IWAMIZAWA, "5-")], event_id=f"2026120711000{n}"))
    client = Client()
    client.force_login(make_staff(Role.CENTRE))
    with django_assert_max_num_queries(12):
        page = client.get(reverse("console:quakes"))
    assert page.status_code == 200
    assert page.content.decode().count("data-alert=") == 10

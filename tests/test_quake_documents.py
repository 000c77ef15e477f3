"""Issue 15's acceptance, from JMA XML documents to guardians' mail: each document of tests/jma/
goes through ingest() (as `mimamori jma-ingest` and the feed give it) into the alerts, the real
fan-out and delivery, and an SMTP sink. 岩見沢市 watches its city 0121000 at 5弱; 滝川市 watches
0122500, which the documents report at 震度4."""

from __future__ import annotations

from pathlib import Path

import pytest

from mimamori.broadcasts.models import Broadcast
from mimamori.quakes.ingest import ingest
from mimamori.quakes.models import AlertStatus, JmaDocument, QuakeAlert
from tests.mailsink import Sink
from tests.tasks import run_until_quiet
from tests.test_quake_alerts import Seed, guardian_mails, staff_notices

pytestmark = pytest.mark.django_db

DOCUMENTS = Path(__file__).resolve().parent / "jma"


def given(name: str) -> None:
    ingest((DOCUMENTS / name).read_bytes(), source=name)
    run_until_quiet()


def sent_broadcasts() -> list[Broadcast]:
    return list(Broadcast.objects.filter(created_by__username="mimamori-quake"))


def test_5_lower_in_iwamizawa_reaches_every_school_of_iwamizawa_and_nobody_in_takikawa(
    smtp_sink: Sink,
) -> None:
    seed = Seed()
    given("vxse53_iwamizawa.xml")
    [broadcast] = sent_broadcasts()
    assert broadcast.urgent
    assert broadcast.answers == ["無事です", "けがをしています", "支援が必要です"]
    assert set(broadcast.municipalities.all()) == {seed.iwamizawa}
    # Every school of 岩見沢市 (one guardian each), none of 滝川市.
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]
    assert not QuakeAlert.objects.filter(municipality=seed.takikawa).exists()


def test_the_same_event_again_and_a_stronger_serial_2_send_nothing_new(smtp_sink: Sink) -> None:
    seed = Seed()
    given("vxse53_iwamizawa.xml")
    given("vxse53_iwamizawa.xml")  # the same bytes: a duplicate document
    given("vxse53_correction.xml")  # 訂正 of the same EventID
    given("vxse53_iwamizawa_serial2.xml")  # Serial 2, 5強
    assert len(sent_broadcasts()) == 1
    assert len(guardian_mails(smtp_sink, seed)) == 2
    alert = QuakeAlert.objects.get(municipality=seed.iwamizawa)
    assert (alert.serial, alert.max_intensity) == (2, "5+")
    subjects = [str(mail["Subject"]) for mail in smtp_sink.to("bousai@city.iwamizawa.example.jp")]
    assert subjects[-1] == "【地震・続報】岩見沢市：震度5強（第2報）"


def test_a_flash_report_vxse51_of_the_area_alone_sends_nothing_without_area_codes(smtp_sink: Sink) -> None:
    seed = Seed()
    given("vxse51_iwamizawa.xml")  # areas only; 岩見沢市 watches its city code
    assert sent_broadcasts() == []
    assert guardian_mails(smtp_sink, seed) == []


@pytest.mark.parametrize("name", ["vxse53_shindo4.xml", "vxse52.xml"])
def test_below_the_threshold_or_another_kind_sends_nothing(smtp_sink: Sink, name: str) -> None:
    seed = Seed()
    given(name)
    assert sent_broadcasts() == []
    assert guardian_mails(smtp_sink, seed) == []
    assert not QuakeAlert.objects.exists()


@pytest.mark.parametrize("name", ["vxse53_drill.xml", "vxse53_test.xml"])
def test_a_drill_or_test_reaches_staff_only(smtp_sink: Sink, name: str) -> None:
    seed = Seed()
    given(name)
    assert sent_broadcasts() == []
    assert guardian_mails(smtp_sink, seed) == []
    alert = QuakeAlert.objects.get(municipality=seed.iwamizawa)
    assert alert.drill
    assert alert.status == AlertStatus.DRILL
    assert staff_notices(seed.iwamizawa)


def test_a_cancellation_during_the_hold_sends_nothing(smtp_sink: Sink) -> None:
    seed = Seed(hold_seconds=60)
    given("vxse53_iwamizawa.xml")
    alert = QuakeAlert.objects.get(municipality=seed.iwamizawa)
    assert alert.status == AlertStatus.HELD
    given("vxse53_cancel.xml")
    alert.refresh_from_db()
    assert alert.status == AlertStatus.CANCELLED
    run_until_quiet()
    assert guardian_mails(smtp_sink, seed) == []


def test_unreported_5_lower_or_more_sends(smtp_sink: Sink) -> None:
    seed = Seed()
    given("vxse53_unreported.xml")  # 岩見沢市: 震度５弱以上未入電
    assert len(sent_broadcasts()) == 1
    assert guardian_mails(smtp_sink, seed) == ["parent0@docomo.ne.jp", "parent1@docomo.ne.jp"]


@pytest.mark.parametrize("name", ["malformed.xml", "billion_laughs.xml", "external_entity.xml"])
def test_malformed_xml_and_bombs_are_refused_logged_and_send_nothing(
    smtp_sink: Sink, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    seed = Seed()
    given(name)
    document = JmaDocument.objects.get(source=name)
    assert document.refused
    assert "refused" in caplog.text
    assert sent_broadcasts() == []
    assert guardian_mails(smtp_sink, seed) == []
    assert not QuakeAlert.objects.exists()

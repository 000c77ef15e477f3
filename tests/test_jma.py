"""Issue 15, part B: reading JMA's disaster XML (mimamori/quakes/jma.py) on the documents of
tests/jma/, written after JMA's published format: 震度速報 (VXSE51), 震源・震度に関する情報
(VXSE53) as 通常, 訓練, 試験, 発表, 訂正, 取消, a Serial 2, 震度５弱以上未入電, a 震度4 only
report, other namespace prefixes with full-width text, another JMA kind, and what must be refused
unread (malformed XML, a billion laughs, an external entity, no JMA namespace)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from mimamori.quakes import jma
from mimamori.quakes.jma import InfoType, Kind, Place, Status

DOCUMENTS = Path(__file__).parent / "jma"
JST = timezone(timedelta(hours=9))


def parse(name: str) -> jma.Report:
    return jma.parse((DOCUMENTS / name).read_bytes())


def refusal(name: str) -> jma.DocumentRefused:
    with pytest.raises(jma.DocumentRefused) as refused:
        parse(name)
    return refused.value


def test_a_vxse53_gives_its_head_earthquake_and_every_area_and_city() -> None:
    report = parse("vxse53_iwamizawa.xml")
    assert (report.kind, report.status, report.info_type) == (Kind.DETAIL, Status.NORMAL, InfoType.ISSUED)
    assert (report.event_id, report.serial, report.title) == ("20261207193012", 1, "震源・震度情報")
    assert report.reported_at == datetime(2026, 12, 7, 19, 34, tzinfo=JST)
    assert report.reported_at.astimezone(UTC) == datetime(2026, 12, 7, 10, 34, tzinfo=UTC)
    assert report.headline == "７日１９時３０分ころ、地震がありました。"
    assert report.origin_time == datetime(2026, 12, 7, 19, 30, tzinfo=JST)
    assert (report.hypocentre, report.magnitude, report.max_intensity) == ("空知地方南部", "5.4", "5-")
    assert report.areas == [
        Place("122", "空知地方南部", "5-"),
        Place("121", "空知地方中部", "4"),
        Place("101", "石狩地方中部", "3"),
    ]
    assert report.cities == [
        Place("0121000", "岩見沢市", "5-"),
        Place("0120900", "夕張市", "4"),
        Place("0122500", "滝川市", "4"),
        Place("0110100", "札幌中央区", "3"),
    ]
    assert report.city("0121000") == Place("0121000", "岩見沢市", "5-")
    assert report.city("0122500") is not None
    assert jma.reaches(report.city("0121000").intensity, "5-")  # type: ignore[union-attr]
    assert not jma.reaches(report.city("0122500").intensity, "5-")  # type: ignore[union-attr]
    assert report.city("0999999") is None


def test_a_vxse51_has_areas_and_no_cities_and_an_empty_serial_is_0() -> None:
    report = parse("vxse51_iwamizawa.xml")
    assert (report.kind, report.title, report.serial, report.event_id) == (
        Kind.FLASH,
        "震度速報",
        0,
        "20261207193012",
    )
    assert report.max_intensity == "5-"
    assert [(area.name, area.code, area.intensity) for area in report.areas] == [
        ("空知地方南部", "122", "5-"),
        ("空知地方中部", "121", "4"),
        ("石狩地方中部", "101", "3"),
    ]
    assert report.cities == []
    assert (report.origin_time, report.hypocentre, report.magnitude) == (None, "", "")


def test_serial_2_is_the_same_event_stronger() -> None:
    first, second = parse("vxse53_iwamizawa.xml"), parse("vxse53_iwamizawa_serial2.xml")
    assert second.event_id == first.event_id
    assert (first.serial, second.serial) == (1, 2)
    assert second.city("0121000") == Place("0121000", "岩見沢市", "5+")
    assert second.max_intensity == "5+"
    assert jma.rank("5+") > jma.rank("5-")


@pytest.mark.parametrize(
    ("name", "status", "event_id"),
    [
        ("vxse53_drill.xml", Status.DRILL, "20261207100000"),
        ("vxse53_test.xml", Status.TEST, "20261207090000"),
    ],
)
def test_drills_and_tests_are_read_with_their_status(name: str, status: Status, event_id: str) -> None:
    report = parse(name)
    assert (report.status, report.event_id, report.info_type) == (status, event_id, InfoType.ISSUED)
    assert report.city("0121000") == Place("0121000", "岩見沢市", "5-")


def test_a_cancellation_names_the_event_and_carries_no_intensities() -> None:
    report = parse("vxse53_cancel.xml")
    assert (report.info_type, report.event_id, report.serial) == (InfoType.CANCELLED, "20261207193012", 1)
    assert report.headline == "先ほどの震源・震度情報を取り消します。"
    assert (report.areas, report.cities, report.max_intensity) == ([], [], None)


def test_a_correction_is_read_like_an_issue() -> None:
    report = parse("vxse53_correction.xml")
    assert (report.info_type, report.serial, report.magnitude) == (InfoType.CORRECTED, 1, "5.5")
    assert report.city("0121000") == Place("0121000", "岩見沢市", "5-")


def test_a_city_whose_5_lower_or_more_has_not_come_in_counts_as_5_lower() -> None:
    report = parse("vxse53_unreported.xml")
    assert report.city("0121000") == Place("0121000", "岩見沢市", "5-", unreported=True)
    # Its area has no MaxInt of its own (only that city), and counts as 5- as well.
    assert report.areas[0] == Place("122", "空知地方南部", "5-", unreported=True)
    # The figures that came in reach 4 only; the unreported city makes the report 5-.
    assert report.max_intensity == "5-"
    assert report.city("0122500") == Place("0122500", "滝川市", "4")


def test_a_city_with_a_low_figure_and_the_unreported_condition_counts_as_5_lower() -> None:
    data = (DOCUMENTS / "vxse53_shindo4.xml").read_bytes()
    data = data.replace(
        b"<Code>0120900</Code><MaxInt>3</MaxInt>",
        "<Code>0120900</Code><MaxInt>3</MaxInt><Condition>震度５弱以上未入電</Condition>".encode(),
    )
    report = jma.parse(data)
    assert report.city("0120900") == Place("0120900", "夕張市", "5-", unreported=True)
    assert report.areas[0] == Place("122", "空知地方南部", "5-", unreported=True)


def test_a_shindo_4_report_reaches_no_5_lower() -> None:
    report = parse("vxse53_shindo4.xml")
    assert report.max_intensity == "4"
    assert not any(jma.reaches(place.intensity, "5-") for place in report.areas + report.cities)
    assert report.city("0121000") == Place("0121000", "岩見沢市", "4")


def test_namespaces_are_read_by_uri_whatever_their_prefixes_and_full_width_text_is_kept() -> None:
    report = parse("vxse53_prefixes.xml")
    assert (report.kind, report.status, report.info_type) == (Kind.DETAIL, Status.NORMAL, InfoType.ISSUED)
    # Full-width digits where JMA writes ASCII are read as ASCII; names stay as written.
    assert (report.event_id, report.serial) == ("20261210115803", 1)
    assert report.cities == [Place("0121000", "岩見沢市", "5-")]
    assert report.areas == [Place("122", "空知地方南部", "5-")]
    # The foreign namespace's <Intensity> (MaxInt 7) is not JMA's and is ignored.
    assert report.max_intensity == "5-"
    # NaN magnitude: its description. The headline's line break becomes one space (one line).
    assert report.magnitude == "Ｍ不明"
    assert report.headline == (
        "１０日１１時５８分ころ、地震がありました。 "
        "震源地は空知地方南部（北緯４３．１度、東経１４１．８度）です。"
    )


def test_another_jma_kind_is_refused_politely() -> None:
    refused = refusal("vxse52.xml")
    assert isinstance(refused, jma.NotRead)
    assert str(refused) == "震源に関する情報: not a report mimamori reads"


def test_malformed_xml_is_refused_with_the_parser_s_reason() -> None:
    refused = refusal("malformed.xml")
    assert not isinstance(refused, jma.NotRead)
    assert str(refused).startswith("not well-formed XML (")


def test_a_billion_laughs_is_refused_before_any_entity_is_expanded() -> None:
    began = time.monotonic()
    refused = refusal("billion_laughs.xml")
    assert time.monotonic() - began < 1
    assert "DTD" in str(refused)


def test_an_external_entity_is_never_read() -> None:
    refused = refusal("external_entity.xml")
    assert "DTD" in str(refused)
    assert "root:" not in str(refused)


def test_entities_without_a_doctype_are_refused_too() -> None:
    # An undeclared entity is a well-formedness error: refused, never looked up.
    data = (
        (DOCUMENTS / "vxse53_iwamizawa.xml")
        .read_bytes()
        .replace(b"<Serial>1</Serial>", b"<Serial>&x;</Serial>")
    )
    with pytest.raises(jma.DocumentRefused, match="not well-formed"):
        jma.parse(data)


def test_a_document_outside_jma_s_namespaces_is_refused() -> None:
    assert "not a JMA disaster XML document" in str(refusal("no_namespace.xml"))


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("<Status>通常</Status>", "<Status>本番</Status>", "unknown Control/Status '本番'"),
        ("<InfoType>発表</InfoType>", "<InfoType>遅延</InfoType>", "unknown Head/InfoType '遅延'"),
        ("<EventID>20261207193012</EventID>", "<EventID></EventID>", "Head/EventID missing"),
        ("<Serial>1</Serial>", "<Serial>first</Serial>", "Head/Serial is not a number"),
        (
            "19:34:00+09:00</ReportDateTime>",
            "19:34:00</ReportDateTime>",
            "Head/ReportDateTime has no time zone",
        ),
        (
            "<Code>0121000</Code><MaxInt>5-</MaxInt>",
            "<Code>0121000</Code><MaxInt>8</MaxInt>",
            "unknown intensity '8'",
        ),
        ("<Code>0120900</Code><MaxInt>4</MaxInt>", "<Code>0120900</Code>", "city 夕張市 has neither MaxInt"),
        (
            "<Name>岩見沢市</Name><Code>0121000</Code>",
            "<Name>岩見沢市</Name><Code>IWA</Code>",
            "no numeric Code",
        ),
    ],
)
def test_a_vxse53_with_values_outside_the_format_is_refused(old: str, new: str, reason: str) -> None:
    data = (DOCUMENTS / "vxse53_iwamizawa.xml").read_text(encoding="utf-8")
    assert old in data
    with pytest.raises(jma.DocumentRefused) as refused:
        jma.parse(data.replace(old, new, 1).encode())
    assert reason in str(refused.value)


def test_a_flash_report_without_intensities_is_refused() -> None:
    data = (DOCUMENTS / "vxse51_iwamizawa.xml").read_text(encoding="utf-8")
    start, end = data.index("<Intensity>"), data.index("</Intensity>") + len("</Intensity>")
    with pytest.raises(jma.DocumentRefused, match="震度速報 without Intensity/Observation"):
        jma.parse((data[:start] + data[end:]).encode())


def test_a_document_too_large_is_refused_unread() -> None:
    with pytest.raises(jma.DocumentRefused, match="larger than 5 MB"):
        jma.parse(b" " * (jma.MAX_DOCUMENT_BYTES + 1))


@pytest.mark.parametrize("name", sorted(path.name for path in DOCUMENTS.glob("vxse5[13]_*.xml")))
def test_every_readable_report_survives_its_json_summary(name: str) -> None:
    report = parse(name)
    assert jma.from_json(jma.as_json(report)) == report

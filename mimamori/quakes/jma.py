"""The Japan Meteorological Agency's disaster XML (気象庁防災情報XML), as far as mimamori reads it:
震度速報 (VXSE51) and 震源・震度に関する情報 (VXSE53).

What the rest of mimamori sees of a document is a Report: its control part (Status 通常 / 訓練 /
試験), its head (InfoType 発表 / 訂正 / 取消, EventID, Serial) and the intensities it gives per
area and per city. Intensities are JMA's classes as the interface names them: 1 2 3 4 5- 5+ 6-
6+ 7; a city listed as 震度５弱以上未入電 (reached 5弱 or more, its figure not yet in) counts as 5-.

parse() reads the bytes of one document with defusedxml and refuses (DocumentRefused, with the
reason) anything that is not a readable VXSE51/VXSE53: malformed XML, any DTD (so no entity
expansion such as "billion laughs" and no external entity is ever read; JMA's documents carry
none), a document outside JMA's namespaces, unknown Status/InfoType or intensity values. A JMA
document of another kind (VXSE52 震源に関する情報, tsunami, volcano …) is refused as NotRead, which
callers log at info: it is JMA's, just not one mimamori acts on.

Elements are found by namespace URI, never by prefix: JMA writes jmx_ib/jmx_seis or default
namespaces as it likes, and any prefix bound to the right URI reads the same.
The format: 気象庁防災情報XMLフォーマット (https://xml.kishou.go.jp/), 地震火山関連XML電文解説資料.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

# JMA's intensity classes, weakest first (the interface's spelling).
INTENSITIES = ("1", "2", "3", "4", "5-", "5+", "6-", "6+", "7")


def rank(intensity: str) -> int:
    """The class's place in INTENSITIES (ValueError for anything else)."""
    return INTENSITIES.index(intensity)


def reaches(intensity: str, threshold: str) -> bool:
    return rank(intensity) >= rank(threshold)


class Kind(enum.StrEnum):
    FLASH = "VXSE51"  # 震度速報: areas only, within about two minutes
    DETAIL = "VXSE53"  # 震源・震度に関する情報: hypocentre, areas and cities


class Status(enum.StrEnum):
    NORMAL = "通常"
    DRILL = "訓練"
    TEST = "試験"


class InfoType(enum.StrEnum):
    ISSUED = "発表"
    CORRECTED = "訂正"
    CANCELLED = "取消"


@dataclass(frozen=True)
class Place:
    """An area (地域, e.g. 石狩地方南部) or a city (市町村, 7-digit code, e.g. 0121000 岩見沢市)."""

    code: str
    name: str
    intensity: str  # one of INTENSITIES
    unreported: bool = False  # 震度５弱以上未入電: counted as 5-


@dataclass(frozen=True)
class Report:
    kind: Kind
    status: Status
    info_type: InfoType
    event_id: str
    serial: int
    title: str  # Head/Title, e.g. 震源・震度情報
    reported_at: datetime  # Head/ReportDateTime, aware
    headline: str = ""  # Head/Headline/Text
    origin_time: datetime | None = None  # Body/Earthquake/OriginTime (VXSE53)
    hypocentre: str = ""  # e.g. 石狩地方中部 (VXSE53)
    magnitude: str = ""  # as written, e.g. 5.4 or M不明
    max_intensity: str | None = None  # Body/Intensity/Observation/MaxInt
    areas: list[Place] = field(default_factory=list)
    cities: list[Place] = field(default_factory=list)

    def city(self, code: str) -> Place | None:
        return next((place for place in self.cities if place.code == code), None)


class DocumentRefused(Exception):
    """A document that is not one mimamori can read: malformed, dangerous (entities, DTDs), or
    not a VXSE51/VXSE53. The message says why, for the log."""


class NotRead(DocumentRefused):
    """A well-formed JMA document of a kind mimamori does not read (VXSE52, tsunami, volcano …).
    Not an error: JMA's feeds carry many kinds; callers log it at info."""


JMX = "http://xml.kishou.go.jp/jmaxml1/"
JMX_IB = "http://xml.kishou.go.jp/jmaxml1/informationBasis1/"
JMX_SEIS = "http://xml.kishou.go.jp/jmaxml1/body/seismology1/"
JMX_EB = "http://xml.kishou.go.jp/jmaxml1/elementBasis1/"

# JMA's documents are kilobytes to some hundreds of kilobytes (a VXSE53 lists every station that
# felt the quake); anything beyond this is not a report, and is refused before it is parsed.
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024

# Control/Title names the kind of information (JMA's kind code is only in file names).
KINDS = {"震度速報": Kind.FLASH, "震源・震度に関する情報": Kind.DETAIL}
# What a city's Condition (or a station's Int) says when its 震度5弱 or more has not come in yet.
UNREPORTED = "震度5弱以上未入電"  # NFKC of JMA's 震度５弱以上未入電

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_CODE = re.compile(r"[0-9]{1,10}")


def one_line(value: str | None) -> str:
    """A one-line text as mimamori stores it: line breaks and other control characters (the input
    rule, mimamori/text.py) become one space; full-width characters stay as JMA wrote them."""
    return _CONTROL.sub(" ", value or "").strip()


def _text(parent: Element | None, *path: str) -> str:
    node = parent.find("/".join(path)) if parent is not None else None
    return one_line(node.text) if node is not None else ""


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _intensity(raw: str, where: str) -> str:
    value = unicodedata.normalize("NFKC", raw).strip()
    if value not in INTENSITIES:
        raise DocumentRefused(f"unknown intensity {raw!r} for {where}")
    return value


def _code(raw: str, where: str) -> str:
    value = unicodedata.normalize("NFKC", raw).strip()
    if not _CODE.fullmatch(value):
        raise DocumentRefused(f"{where} has no numeric Code ({raw!r})")
    return value


def _datetime(raw: str, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise DocumentRefused(f"{where} is not a date and time ({raw!r})") from None
    if value.tzinfo is None:
        raise DocumentRefused(f"{where} has no time zone ({raw!r})")
    return value


def _higher(a: str, b: str) -> str:
    return a if rank(a) >= rank(b) else b


def _observation(observation: Element) -> tuple[str | None, list[Place], list[Place]]:
    """Intensity/Observation: its MaxInt, and the areas and cities (with Pref only as a level)."""
    s = JMX_SEIS
    areas: list[Place] = []
    cities: list[Place] = []
    for pref in observation.findall(_q(s, "Pref")):
        for area in pref.findall(_q(s, "Area")):
            area_name = _text(area, _q(s, "Name"))
            area_cities = [_city(city) for city in area.findall(_q(s, "City"))]
            cities.extend(area_cities)
            unreported = any(city.unreported for city in area_cities)
            stated = _text(area, _q(s, "MaxInt"))
            if stated:
                intensity = _intensity(stated, area_name or "an area")
            elif unreported:
                # JMA leaves MaxInt out of an area whose only figure is "5弱 or more, not yet in".
                intensity = "5-"
            else:
                raise DocumentRefused(f"area {area_name or '?'} has no MaxInt")
            if unreported:
                intensity = _higher(intensity, "5-")
            areas.append(
                Place(
                    code=_code(_text(area, _q(s, "Code")), f"area {area_name}"),
                    name=area_name,
                    intensity=intensity,
                    unreported=unreported,
                )
            )
    stated_max = _text(observation, _q(s, "MaxInt"))
    highest = _intensity(stated_max, "Observation/MaxInt") if stated_max else None
    for place in areas + cities:
        highest = place.intensity if highest is None else _higher(highest, place.intensity)
    return highest, areas, cities


def _is_unreported(raw: str) -> bool:
    return unicodedata.normalize("NFKC", raw).strip() == UNREPORTED


def _city(city: Element) -> Place:
    s = JMX_SEIS
    name = _text(city, _q(s, "Name"))
    stated = _text(city, _q(s, "MaxInt"))
    unreported = _is_unreported(_text(city, _q(s, "Condition"))) or any(
        _is_unreported(_text(station, _q(s, "Int"))) for station in city.findall(_q(s, "IntensityStation"))
    )
    if stated:
        intensity = _intensity(stated, name or "a city")
        if unreported:
            intensity = _higher(intensity, "5-")
    elif unreported:
        intensity = "5-"
    else:
        raise DocumentRefused(f"city {name or '?'} has neither MaxInt nor Condition 震度５弱以上未入電")
    return Place(
        code=_code(_text(city, _q(s, "Code")), f"city {name}"),
        name=name,
        intensity=intensity,
        unreported=unreported,
    )


def _load(data: bytes) -> Element:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentRefused(f"larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB: not a JMA report")
    try:
        # No DTD at all: JMA's documents have none, and refusing the DOCTYPE itself means no
        # entity is ever declared, expanded (billion laughs) or fetched (external entities).
        return fromstring(data, forbid_dtd=True)
    except DTDForbidden:
        raise DocumentRefused(
            "the document has a DTD (<!DOCTYPE>), which JMA's documents never have"
        ) from None
    except EntitiesForbidden:
        raise DocumentRefused("the document declares entities, which JMA's documents never do") from None
    except ExternalReferenceForbidden:
        raise DocumentRefused("the document refers to an external resource") from None
    except ParseError as error:
        raise DocumentRefused(f"not well-formed XML ({one_line(str(error))})") from None


def parse(data: bytes) -> Report:
    """The Report in one JMA document (its bytes as received), or DocumentRefused saying why not
    (NotRead for a JMA document of another kind).

    A 取消 carries no intensities (its areas and cities are empty). max_intensity is the higher
    of Observation/MaxInt and every place's intensity, so a city that is 震度５弱以上未入電 makes it
    at least 5- even where the figures that did come in are lower."""
    root = _load(data)
    if root.tag != _q(JMX, "Report"):
        raise DocumentRefused(f"not a JMA disaster XML document (its root is {one_line(root.tag)[:100]})")
    control = root.find(_q(JMX, "Control"))
    head = root.find(_q(JMX_IB, "Head"))
    if control is None or head is None:
        raise DocumentRefused("a JMA document without Control or Head (in JMA's namespaces)")
    control_title = _text(control, _q(JMX, "Title"))
    kind = KINDS.get(control_title)
    if kind is None:
        raise NotRead(f"{control_title or 'an untitled document'}: not a report mimamori reads")
    status_text = _text(control, _q(JMX, "Status"))
    info_type_text = _text(head, _q(JMX_IB, "InfoType"))
    try:
        status = Status(status_text)
    except ValueError:
        raise DocumentRefused(f"unknown Control/Status {status_text!r}") from None
    try:
        info_type = InfoType(info_type_text)
    except ValueError:
        raise DocumentRefused(f"unknown Head/InfoType {info_type_text!r}") from None
    event_id = unicodedata.normalize("NFKC", _text(head, _q(JMX_IB, "EventID")))
    if not event_id or len(event_id) > 40:
        raise DocumentRefused(f"Head/EventID missing or too long ({event_id[:50]!r})")
    serial_text = unicodedata.normalize("NFKC", _text(head, _q(JMX_IB, "Serial")))
    if serial_text and not (serial_text.isascii() and serial_text.isdigit()):
        raise DocumentRefused(f"Head/Serial is not a number ({serial_text!r})")
    reported_at = _datetime(_text(head, _q(JMX_IB, "ReportDateTime")), "Head/ReportDateTime")

    body = root.find(_q(JMX_SEIS, "Body"))
    earthquake = body.find(_q(JMX_SEIS, "Earthquake")) if body is not None else None
    observation = (
        body.find(f"{_q(JMX_SEIS, 'Intensity')}/{_q(JMX_SEIS, 'Observation')}") if body is not None else None
    )
    if body is None and info_type is not InfoType.CANCELLED:
        raise DocumentRefused(f"{control_title} without a seismology Body")
    if kind is Kind.FLASH and observation is None and info_type is not InfoType.CANCELLED:
        raise DocumentRefused("震度速報 without Intensity/Observation")

    origin_time = None
    hypocentre = magnitude = ""
    if earthquake is not None:
        origin_text = _text(earthquake, _q(JMX_SEIS, "OriginTime"))
        origin_time = _datetime(origin_text, "Earthquake/OriginTime") if origin_text else None
        hypocentre = _text(earthquake, _q(JMX_SEIS, "Hypocenter"), _q(JMX_SEIS, "Area"), _q(JMX_SEIS, "Name"))
        node = earthquake.find(_q(JMX_EB, "Magnitude"))
        if node is not None:
            # NaN with a description (Ｍ不明, Ｍ８を超える巨大地震) when the figure is not known.
            value = one_line(node.text)
            magnitude = one_line(node.get("description")) if value in ("", "NaN") else value
    max_intensity, areas, cities = _observation(observation) if observation is not None else (None, [], [])
    return Report(
        kind=kind,
        status=status,
        info_type=info_type,
        event_id=event_id,
        # 震度速報 carries an empty Serial: 0, before the 震源・震度に関する情報's 1, 2, ...
        serial=int(serial_text or 0),
        title=_text(head, _q(JMX_IB, "Title")),
        reported_at=reported_at,
        headline=_text(head, _q(JMX_IB, "Headline"), _q(JMX_IB, "Text")),
        origin_time=origin_time,
        hypocentre=hypocentre,
        magnitude=magnitude,
        max_intensity=max_intensity,
        areas=areas,
        cities=cities,
    )


def _place_json(place: Place) -> dict[str, Any]:
    return {
        "code": place.code,
        "name": place.name,
        "intensity": place.intensity,
        "unreported": place.unreported,
    }


def as_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (JmaDocument.summary); from_json() gives it back."""
    return {
        "kind": report.kind.value,
        "status": report.status.value,
        "info_type": report.info_type.value,
        "event_id": report.event_id,
        "serial": report.serial,
        "title": report.title,
        "reported_at": report.reported_at.isoformat(),
        "headline": report.headline,
        "origin_time": report.origin_time.isoformat() if report.origin_time else None,
        "hypocentre": report.hypocentre,
        "magnitude": report.magnitude,
        "max_intensity": report.max_intensity,
        "areas": [_place_json(place) for place in report.areas],
        "cities": [_place_json(place) for place in report.cities],
    }


def from_json(data: dict[str, Any]) -> Report:
    origin_time = data.get("origin_time")
    return Report(
        kind=Kind(data["kind"]),
        status=Status(data["status"]),
        info_type=InfoType(data["info_type"]),
        event_id=data["event_id"],
        serial=data["serial"],
        title=data["title"],
        reported_at=datetime.fromisoformat(data["reported_at"]),
        headline=data.get("headline", ""),
        origin_time=datetime.fromisoformat(origin_time) if origin_time else None,
        hypocentre=data.get("hypocentre", ""),
        magnitude=data.get("magnitude", ""),
        max_intensity=data.get("max_intensity"),
        areas=[Place(**place) for place in data.get("areas", [])],
        cities=[Place(**place) for place in data.get("cities", [])],
    )

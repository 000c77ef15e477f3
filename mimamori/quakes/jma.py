"""The Japan Meteorological Agency's disaster XML (気象庁防災情報XML), as far as mimamori reads it:
震度速報 (VXSE51) and 震源・震度に関する情報 (VXSE53).

What the rest of mimamori sees of a document is a Report: its control part (Status 通常 / 訓練 /
試験), its head (InfoType 発表 / 訂正 / 取消, EventID, Serial) and the intensities it gives per
area and per city. Intensities are JMA's classes as the interface names them: 1 2 3 4 5- 5+ 6-
6+ 7; a city listed as 震度５弱以上未入電 (reached 5弱 or more, its figure not yet in) counts as 5-.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

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

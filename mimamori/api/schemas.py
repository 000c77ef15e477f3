"""Request and response shapes of the REST API. Times are ISO 8601 with the local offset.

Every value a client sends obeys mimamori.text's input rule, and the OpenAPI document says so:
strings carry their field's maxLength, a minLength (or a pattern requiring a visible character)
where a value is required, and a `pattern` for the characters allowed; integers carry ranges
(ids 1..2^63-1). A lone surrogate cannot be said in a pattern, so a validator applies
text.problem as well and answers with its message, in the user's language.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from django.utils import timezone
from ninja import Schema
from ninja.schema import DjangoGetter
from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mimamori import text
from mimamori.quakes import models as quake_models
from mimamori.registry import tags
from mimamori.registry.models import SLOTS, AddressStatus, Municipality, Registrant, RegistrantStatus, School
from mimamori.registry.registrants import Enrolment

# --- the input rule, as schema types ---------------------------------------------------------

# What str.strip() removes beyond the control characters the rule already forbids: a value of
# only these is empty once the server strips it, so a required value needs one character outside.
_SPACES = r" \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def _inside(pattern: str) -> str:
    """The forbidden characters of one of text's ^[^…]*$ patterns."""
    assert pattern.startswith("^[^"), pattern
    assert pattern.endswith("]*$"), pattern
    return pattern[3:-3]


_LINE = _inside(text.SINGLE_LINE_PATTERN)
_LINES = _inside(text.MULTI_LINE_PATTERN)
FILLED_LINE_PATTERN = f"^[^{_LINE}]*[^{_LINE}{_SPACES}][^{_LINE}]*$"
FILLED_LINES_PATTERN = f"^[^{_LINES}]*[^{_LINES}\\t\\n\\r{_SPACES}][^{_LINES}]*$"


def _rule(multiline: bool) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str) and (message := text.problem(value, multiline=multiline)) is not None:
            raise PydanticCustomError("control_characters", str(message))
        return value

    return check


# Use as Annotated[str, line(64), ONE_LINE]: the validator gives the rule's own message (and
# catches lone surrogates); line() gives the lengths and the pattern the document shows.
ONE_LINE = BeforeValidator(_rule(multiline=False))
MULTI_LINE = BeforeValidator(_rule(multiline=True))


def line(max_length: int, *, required: bool = False, pattern: str | None = None, **extra: Any) -> Any:
    """Field constraints of a one-line string of at most ``max_length`` characters;
    ``required``: not blank."""
    if pattern is None:
        pattern = FILLED_LINE_PATTERN if required else text.SINGLE_LINE_PATTERN
    return Field(min_length=1 if required else 0, max_length=max_length, pattern=pattern, **extra)


def lines(max_length: int, **extra: Any) -> Any:
    """Field constraints of multi-line text (TAB, LF and CR allowed), not blank."""
    return Field(min_length=1, max_length=max_length, pattern=FILLED_LINES_PATTERN, **extra)


# Django's SlugField, as municipality codes are.
CODE_PATTERN = r"^[-a-zA-Z0-9_]+$"
Code = Annotated[str, Field(min_length=1, max_length=32, pattern=CODE_PATTERN), ONE_LINE]
Id = Annotated[int, Field(ge=1, le=text.MAX_BIGINT)]
Grade = Annotated[int, Field(ge=1, le=9)]
# A mail address slot: what makes an address deliverable (email_validator) is checked by the
# registry and refused with 422 and a message saying why; the schema says length and characters.
AddressSlot = Annotated[str, line(254), ONE_LINE]
# Lists a client may send: long enough for any real scope, short enough to stay cheap.
MAX_ITEMS = 1000


def _local_iso(value: datetime) -> str:
    return timezone.localtime(value).isoformat()


LocalTime = Annotated[datetime, PlainSerializer(_local_iso, return_type=str)]
Slots = Annotated[list[AddressSlot | None], Field(max_length=len(SLOTS))]


class Error(Schema):
    """Every refusal: a message, or for 422 a list of {loc, msg, type} naming each field."""

    detail: str | list[dict[str, Any]]


def errors(*statuses: int) -> dict[int, type[Error]]:
    return dict.fromkeys(statuses, Error)


# What every operation can answer besides success: 401 without a live staff token, 422 for
# parameters outside the schema. With a JSON body also 400 (not JSON, not UTF-8) and 413 (too large).
READ_ERRORS = errors(401, 422)
BODY_ERRORS = errors(400, 401, 413, 422)


class Body(Schema):
    """A request body: JSON types as the document says them (no 0 for false, no "1" for 1)."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, value: Any) -> Any:
        # ninja reads attributes off anything it is given; a body must be a JSON object.
        inner = value._obj if isinstance(value, DjangoGetter) else value  # ninja wraps what it is given
        if not isinstance(inner, dict | Schema):
            raise PydanticCustomError("model_type", "Input should be an object")
        return value


# --- municipalities -------------------------------------------------------------------


# Django's EmailValidator takes more than this (quoted local parts, IDN domains); the API takes
# the common dot-atom form, which that validator always accepts, so the schema is exact.
SUPPORT_EMAIL_PATTERN = (
    r"^([-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+(\.[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})?$"
)


class SupportContact(Body):
    name: Annotated[str, line(100), ONE_LINE] = ""
    phone: Annotated[str, line(32), ONE_LINE] = ""
    email: Annotated[str, line(254, pattern=SUPPORT_EMAIL_PATTERN), ONE_LINE] = ""
    hours: Annotated[str, line(100), ONE_LINE] = ""


def _code_rule(kind: str) -> Callable[[Any], Any]:
    """A JMA code's own message (in the user's language) before the pattern's generic one."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and (message := quake_models.codes_problem([value], kind)) is not None:
            raise PydanticCustomError("jma_code", message)
        return value

    return check


CityCode = Annotated[
    str,
    Field(pattern=r"^[0-9]{7}$", description="JMA's 7-digit city code, e.g. 0121000 (岩見沢市)."),
    BeforeValidator(_code_rule("city")),
]


def _whole(value: Any) -> Any:
    # JSON Schema's "integer" includes 231.0: take it as the whole number it is.
    return int(value) if isinstance(value, float) and value.is_integer() else value


Intensity = Literal["1", "2", "3", "4", "5-", "5+", "6-", "6+", "7"]


class EarthquakeSettingsSchema(Body):
    """The earthquake 安否確認 (B10): a report whose intensity reaches ``threshold`` in one of
    ``city_codes`` sends the municipality's earthquake broadcast after ``hold_seconds``."""

    city_codes: list[CityCode] = Field(
        default_factory=list, max_length=quake_models.CODES_MAX, json_schema_extra={"uniqueItems": True}
    )
    threshold: Intensity = "5-"
    hold_seconds: Annotated[int, Field(ge=0, le=quake_models.HOLD_SECONDS_MAX), BeforeValidator(_whole)] = 0

    @field_validator("city_codes")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if (message := quake_models.codes_problem(value, "city")) is not None:
            raise PydanticCustomError("jma_code", message)
        return value


class ServiceSettings(Body):
    confirmation_links_enabled: bool = True
    one_click_unsubscribe: bool = True
    broadcast_slots: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=lambda: [1, 2])
    maintenance_notice_lead_hours: Annotated[int, Field(ge=0, le=366 * 24)] = 72
    reach_test_interval_days: Annotated[int, Field(ge=0, le=366)] = Field(
        default=0, description="Every this many days each school gets a 到達テスト (9:00-18:00); 0: never."
    )
    earthquake: EarthquakeSettingsSchema = Field(default_factory=EarthquakeSettingsSchema)


class MunicipalityIn(Body):
    code: Code
    name: Annotated[str, line(64, required=True), ONE_LINE]
    mail_domain: Annotated[
        str, line(253, pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"), ONE_LINE
    ]
    support_contact: SupportContact | None = None
    settings: ServiceSettings | None = None


class MunicipalityOut(Schema):
    code: str
    name: str
    mail_domain: str
    support_contact: SupportContact
    settings: ServiceSettings

    @staticmethod
    def resolve_support_contact(obj: Municipality) -> SupportContact:
        return SupportContact(
            name=obj.support_name, phone=obj.support_phone, email=obj.support_email, hours=obj.support_hours
        )

    @staticmethod
    def resolve_settings(obj: Municipality) -> ServiceSettings:
        return ServiceSettings(
            confirmation_links_enabled=obj.confirmation_links_enabled,
            one_click_unsubscribe=obj.one_click_unsubscribe,
            broadcast_slots=list(obj.broadcast_slots),
            maintenance_notice_lead_hours=obj.maintenance_notice_lead_hours,
            reach_test_interval_days=obj.reach_test_interval_days,
            earthquake=earthquake_out(obj),
        )


def earthquake_out(obj: Municipality) -> EarthquakeSettingsSchema:
    try:
        config = obj.earthquake
    except quake_models.EarthquakeSettings.DoesNotExist:
        return EarthquakeSettingsSchema()
    return EarthquakeSettingsSchema(
        city_codes=list(config.city_codes),
        threshold=cast(Intensity, config.threshold),
        hold_seconds=config.hold_seconds,
    )


# --- schools --------------------------------------------------------------------------


class SchoolIn(Body):
    municipality: Code = Field(description="The municipality's code.")
    name: Annotated[str, line(64, required=True), ONE_LINE]
    sender_local_part: Annotated[str, line(64, pattern=r"^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$"), ONE_LINE]


class SchoolOut(Schema):
    id: int
    municipality: str
    name: str
    sender_local_part: str
    sender_address: str

    @staticmethod
    def resolve_municipality(obj: School) -> str:
        return obj.municipality.code


# --- registrants ----------------------------------------------------------------------

TAG_DESCRIPTION = (
    "The IC tag the gate readers read: 1-64 of A-Z a-z 0-9 : . _ - (trimmed), unique in the "
    'school; "" for none. A tag another child of the school carries is refused with 409.'
)


def _tag_rule(value: Any) -> Any:
    """The tag rule's own message (in the user's language) before the pattern's generic one."""
    if isinstance(value, str) and (message := tags.tag_problem(tags.normalize_tag(value))) is not None:
        raise PydanticCustomError("tag_id", message)
    return value


TagId = Annotated[
    str,
    Field(max_length=80, pattern=tags.TAG_SCHEMA_PATTERN, description=TAG_DESCRIPTION),
    ONE_LINE,
    BeforeValidator(_tag_rule),
]


class RegistrantIn(Body):
    school: Id
    child_name: Annotated[str, line(64, required=True), ONE_LINE]
    child_name_kana: Annotated[str, line(64), ONE_LINE] = ""
    grade: Grade
    class_name: Annotated[str, line(16, required=True), ONE_LINE]
    addresses: Slots = Field(default_factory=list, description="Slots 1-4; null or missing for empty.")
    receive_broadcasts: bool = True
    tag_id: TagId = ""


class RegistrantPatch(Body):
    addresses: Slots | None = None
    receive_broadcasts: bool | None = None
    tag_id: TagId | None = Field(default=None, description=f"{TAG_DESCRIPTION} null or missing: unchanged.")


class SlotOut(Schema):
    slot: int
    email: str | None
    status: AddressStatus | None = Field(
        description="ok, bouncing (failures recorded, still mailed) or suppressed (no more mail "
        "until the address is set again); null for an empty slot."
    )


class RegistrantOut(Schema):
    id: int
    login_id: str
    school: int
    child_name: str
    child_name_kana: str
    grade: int
    class_name: str
    status: RegistrantStatus
    receive_broadcasts: bool
    tag_id: str = Field(description='The IC tag the gate readers read; "" for none.')
    registration_pending: bool = Field(description="True until the guardian's first login.")
    addresses: list[SlotOut]
    created_at: LocalTime
    updated_at: LocalTime
    deregistered_at: LocalTime | None

    @staticmethod
    def resolve_school(obj: Registrant) -> int:
        return obj.school_id

    @staticmethod
    def resolve_registration_pending(obj: Registrant) -> bool:
        return obj.has_pending_registration

    @staticmethod
    def resolve_addresses(obj: Registrant) -> list[SlotOut]:
        held = {address.slot: address for address in obj.addresses.all()}
        return [
            SlotOut(slot=slot, email=held[slot].email, status=AddressStatus(held[slot].status))
            if slot in held
            else SlotOut(slot=slot, email=None, status=None)
            for slot in SLOTS
        ]


class EnrolmentOut(RegistrantOut):
    registration_code: str = Field(description="Shown once: print it on the registration letter.")


class Enrolled:
    """An enrolment seen as its registrant plus the one-time code, for EnrolmentOut."""

    def __init__(self, enrolment: Enrolment) -> None:
        self.registration_code = enrolment.registration_code
        self._registrant = enrolment.registrant

    def __getattr__(self, name: str) -> object:
        return getattr(self._registrant, name)

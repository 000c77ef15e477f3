"""Request and response shapes of the REST API. Times are ISO 8601 with the local offset."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.utils import timezone
from ninja import Schema
from pydantic import Field, PlainSerializer

from mimamori.registry.models import SLOTS, Municipality, Registrant, School
from mimamori.registry.registrants import Enrolment


def _local_iso(value: datetime) -> str:
    return timezone.localtime(value).isoformat()


LocalTime = Annotated[datetime, PlainSerializer(_local_iso, return_type=str)]
Slots = Annotated[list[str | None], Field(max_length=len(SLOTS))]


class Error(Schema):
    detail: object


# --- municipalities -------------------------------------------------------------------


class SupportContact(Schema):
    name: str = ""
    phone: str = ""
    email: str = ""
    hours: str = ""


class ServiceSettings(Schema):
    confirmation_links_enabled: bool = True
    one_click_unsubscribe: bool = True
    broadcast_slots: list[Annotated[int, Field(ge=1, le=4)]] = Field(default_factory=lambda: [1, 2])
    maintenance_notice_lead_hours: Annotated[int, Field(ge=0)] = 72
    reach_test_interval_days: Annotated[int, Field(ge=0, le=366)] = Field(
        default=0, description="Every this many days each school gets a 到達テスト (9:00-18:00); 0: never."
    )


class MunicipalityIn(Schema):
    code: str
    name: str
    mail_domain: str
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
        )


# --- schools --------------------------------------------------------------------------


class SchoolIn(Schema):
    municipality: str = Field(description="The municipality's code.")
    name: str
    sender_local_part: str


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


class RegistrantIn(Schema):
    school: int
    child_name: str
    child_name_kana: str = ""
    grade: int
    class_name: str
    addresses: Slots = Field(default_factory=list, description="Slots 1-4; null or missing for empty.")
    receive_broadcasts: bool = True


class RegistrantPatch(Schema):
    addresses: Slots | None = None
    receive_broadcasts: bool | None = None


class SlotOut(Schema):
    slot: int
    email: str | None
    status: str | None = Field(
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
    status: str
    receive_broadcasts: bool
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
            SlotOut(slot=slot, email=held[slot].email, status=held[slot].status)
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

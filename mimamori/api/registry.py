"""Registry endpoints: municipalities, schools, registrants. Thin: access and verbs do the work."""

# No "from __future__ import annotations": ninja reads the parameter annotations at import.

from typing import Annotated, Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from ninja.pagination import paginate

from mimamori.api.auth import staff_of
from mimamori.api.pagination import Pages
from mimamori.api.schemas import (
    BODY_ERRORS,
    CODE_PATTERN,
    ONE_LINE,
    READ_ERRORS,
    EarthquakeSettingsSchema,
    Enrolled,
    EnrolmentOut,
    Grade,
    Id,
    MunicipalityIn,
    MunicipalityOut,
    RegistrantIn,
    RegistrantOut,
    RegistrantPatch,
    SchoolIn,
    SchoolOut,
    ServiceSettings,
    earthquake_out,
    errors,
    line,
)
from mimamori.audit import log as audit
from mimamori.quakes import alerts, configuration
from mimamori.quakes.models import EarthquakeSettings
from mimamori.registry import access, alert_templates, tags
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Municipality, Registrant, School, class_key
from mimamori.registry.registrants import deregister, enrol, registrant_target
from mimamori.text import MAX_BIGINT

router = Router()

RegistrantId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]


@router.post(
    "/municipalities", response={201: MunicipalityOut, **BODY_ERRORS, **errors(403, 409)}, tags=["registry"]
)
def create_municipality(request: HttpRequest, data: MunicipalityIn) -> Status[Municipality]:
    if not access.can_manage_municipalities(staff_of(request)):
        raise HttpError(403, _("Only the support centre can add municipalities."))
    contact = data.support_contact
    service = data.settings or ServiceSettings()
    municipality = Municipality(code=data.code.strip(), name=data.name.strip(), mail_domain=data.mail_domain)
    if contact is not None:
        municipality.support_name = contact.name
        municipality.support_phone = contact.phone
        municipality.support_email = contact.email
        municipality.support_hours = contact.hours
    municipality.confirmation_links_enabled = service.confirmation_links_enabled
    municipality.one_click_unsubscribe = service.one_click_unsubscribe
    municipality.broadcast_slots = sorted(set(service.broadcast_slots))
    municipality.maintenance_notice_lead_hours = service.maintenance_notice_lead_hours
    municipality.reach_test_interval_days = service.reach_test_interval_days
    if Municipality.objects.filter(code=municipality.code).exists():
        raise HttpError(409, _("A municipality with code %(code)s already exists.") % {"code": data.code})
    municipality.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            municipality.save()
            earthquake = EarthquakeSettings(
                municipality=municipality,
                city_codes=list(service.earthquake.city_codes),
                threshold=service.earthquake.threshold,
                hold_seconds=service.earthquake.hold_seconds,
            )
            earthquake.full_clean()
            earthquake.save()
            # A new city starts with the common alert templates (P6), which its staff adapt.
            alert_templates.add_common(municipality)
    except IntegrityError:  # a concurrent request took the code between check and insert
        raise HttpError(
            409, _("A municipality with code %(code)s already exists.") % {"code": data.code}
        ) from None
    return Status(201, municipality)


@router.get("/municipalities", response={200: list[MunicipalityOut], **errors(401)}, tags=["registry"])
def list_municipalities(request: HttpRequest) -> QuerySet[Municipality]:
    return access.municipalities_for(staff_of(request)).select_related("earthquake")


@router.put(
    "/municipalities/{code}/earthquake",
    response={200: EarthquakeSettingsSchema, **BODY_ERRORS, **errors(403, 404)},
    tags=["registry"],
)
def put_earthquake_settings(
    request: HttpRequest,
    code: Annotated[str, Path(min_length=1, max_length=32, pattern=CODE_PATTERN)],
    data: EarthquakeSettingsSchema,
) -> EarthquakeSettingsSchema:
    """Change a municipality's earthquake settings (the centre; a municipality its own). Audited."""
    user = staff_of(request)
    municipality = access.get_municipality(user, code)
    if not alerts.can_manage(user):
        raise HttpError(
            403, _("Only the support centre and the municipality can change its earthquake settings.")
        )
    values = {
        "city_codes": list(data.city_codes),
        "threshold": data.threshold,
        "hold_seconds": data.hold_seconds,
    }
    configuration.change_settings(municipality, values, by=user, request=request)
    municipality.refresh_from_db()
    return earthquake_out(municipality)


@router.post("/schools", response={201: SchoolOut, **BODY_ERRORS, **errors(403, 404, 409)}, tags=["registry"])
def create_school(request: HttpRequest, data: SchoolIn) -> Status[School]:
    user = staff_of(request)
    if not access.can_manage_schools(user):
        raise HttpError(403, _("Only the support centre and municipalities can add schools."))
    municipality = access.get_municipality(user, data.municipality)
    school = School(
        municipality=municipality, name=data.name.strip(), sender_local_part=data.sender_local_part.strip()
    )
    duplicate = _("This municipality already has a school sending from %(address)s.")
    if School.objects.filter(municipality=municipality, sender_local_part=school.sender_local_part).exists():
        raise HttpError(409, duplicate % {"address": school.sender_address})
    school.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            school.save()
    except IntegrityError:
        raise HttpError(409, duplicate % {"address": school.sender_address}) from None
    return Status(201, school)


@router.get("/schools", response={200: list[SchoolOut], **errors(401)}, tags=["registry"])
def list_schools(request: HttpRequest) -> QuerySet[School]:
    return access.schools_for(staff_of(request))


@router.post(
    "/registrants", response={201: EnrolmentOut, **BODY_ERRORS, **errors(404, 409)}, tags=["registry"]
)
def create_registrant(request: HttpRequest, data: RegistrantIn) -> Status[Enrolled]:
    user = staff_of(request)
    school = access.get_school(user, data.school)
    tag = tags.clean_tag(data.tag_id)
    if (holder := tags.find_holder(school, tag)) is not None:
        raise HttpError(409, tags.TagTaken(tag, holder).message)
    try:
        with transaction.atomic():
            enrolment = enrol(
                school,
                child_name=data.child_name,
                child_name_kana=data.child_name_kana,
                grade=data.grade,
                class_name=data.class_name,
                addresses=data.addresses,
                receive_broadcasts=data.receive_broadcasts,
                tag_id=tag,
            )
    except IntegrityError:
        # Another request gave the tag to a child between the look and the insert.
        if (holder := tags.find_holder(school, tag)) is None:
            raise
        raise HttpError(409, tags.TagTaken(tag, holder).message) from None
    # A tag given at enrolment is in the event; later changes are registrant.tag_changed.
    extra = {"tag_id": tag} if tag else {}
    audit.record(
        "registrant.created",
        actor=user,
        target=registrant_target(enrolment.registrant),
        municipality=school.municipality,
        request=request,
        school=school.pk,
        **extra,
    )
    return Status(201, Enrolled(enrolment))


class RegistrantFilter(Schema):
    school: Id | None = None
    grade: Grade | None = None
    class_name: Annotated[str, line(16), ONE_LINE] | None = None


@router.get("/registrants", response={200: list[RegistrantOut], **READ_ERRORS}, tags=["registry"])
@paginate(Pages)
def list_registrants(request: HttpRequest, filters: Query[RegistrantFilter]) -> QuerySet[Registrant]:
    registrants = access.registrants_for(staff_of(request)).prefetch_related("addresses")
    if filters.school is not None:
        registrants = registrants.filter(school_id=filters.school)
    if filters.grade is not None:
        registrants = registrants.filter(grade=filters.grade)
    if filters.class_name is not None:
        registrants = registrants.filter(class_name=class_key(filters.class_name))
    return registrants


@router.get(
    "/registrants/{registrant_id}",
    response={200: RegistrantOut, **READ_ERRORS, **errors(404)},
    tags=["registry"],
)
def get_registrant(request: HttpRequest, registrant_id: RegistrantId) -> Registrant:
    return access.get_registrant(staff_of(request), registrant_id)


@router.patch(
    "/registrants/{registrant_id}",
    response={200: RegistrantOut, **BODY_ERRORS, **errors(404, 409)},
    tags=["registry"],
)
def update_registrant(request: HttpRequest, registrant_id: RegistrantId, data: RegistrantPatch) -> Registrant:
    user = staff_of(request)
    registrant = access.get_registrant(user, registrant_id)
    if not registrant.is_active:
        raise HttpError(409, _("This registrant has been deregistered and can no longer be changed."))
    with transaction.atomic():
        if data.addresses is not None and (changes := set_addresses(registrant, data.addresses)):
            _audit_change(
                request, registrant, "registrant.addresses_changed", slots=[c.slot for c in changes]
            )
        if data.receive_broadcasts is not None and data.receive_broadcasts != registrant.receive_broadcasts:
            registrant.receive_broadcasts = data.receive_broadcasts
            registrant.save(update_fields=["receive_broadcasts", "updated_at"])
            _audit_change(
                request, registrant, "registrant.option_changed", receive_broadcasts=data.receive_broadcasts
            )
        if data.tag_id is not None:
            try:
                tags.set_tag(registrant, data.tag_id, by=user, request=request)
            except tags.TagTaken as taken:
                # Nothing of this request stays: the atomic block undoes the other changes.
                raise HttpError(409, taken.message) from None
    return access.get_registrant(staff_of(request), registrant_id)


def _audit_change(request: HttpRequest, registrant: Registrant, action: str, **details: Any) -> None:
    audit.record(
        action,
        actor=staff_of(request),
        target=registrant_target(registrant),
        municipality=registrant.school.municipality,
        request=request,
        **details,
    )


@router.post(
    "/registrants/{registrant_id}/deregister",
    response={200: RegistrantOut, **READ_ERRORS, **errors(404)},
    tags=["registry"],
)
def deregister_registrant(request: HttpRequest, registrant_id: RegistrantId) -> Registrant:
    registrant = access.get_registrant(staff_of(request), registrant_id)
    deregister(registrant)
    return registrant

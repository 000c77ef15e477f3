"""The one place that decides what a signed-in user may reach (P9).

Every console view, API endpoint and guardian page fetches objects through these
functions. Objects outside the user's scope are reported as missing (404), not forbidden,
so an outsider cannot learn that they exist.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts.models import Broadcast
from mimamori.registry.models import (
    DeregistrationReason,
    DeregistrationRequest,
    DeregistrationStatus,
    Municipality,
    Registrant,
    School,
)
from mimamori.support.models import Inquiry


def municipalities_for(user: User) -> QuerySet[Municipality]:
    if not user.is_console_user:
        return Municipality.objects.none()
    if user.role == Role.CENTRE:
        return Municipality.objects.all()
    if user.role == Role.MUNICIPALITY:
        return Municipality.objects.filter(staff=user)
    if user.role == Role.SCHOOL:
        return Municipality.objects.filter(schools__staff=user)
    return Municipality.objects.none()


def schools_for(user: User) -> QuerySet[School]:
    schools = School.objects.select_related("municipality")
    if not user.is_console_user:
        return schools.none()
    if user.role == Role.CENTRE:
        return schools.all()
    if user.role == Role.MUNICIPALITY:
        return schools.filter(municipality__staff=user)
    if user.role == Role.SCHOOL:
        return schools.filter(staff=user)
    return schools.none()


def registrants_for(user: User) -> QuerySet[Registrant]:
    registrants = Registrant.objects.select_related("school__municipality", "account")
    if not user.is_console_user:
        return registrants.none()
    if user.role == Role.CENTRE:
        return registrants.all()
    if user.role == Role.MUNICIPALITY:
        return registrants.filter(school__municipality__staff=user)
    if user.role == Role.SCHOOL:
        return registrants.filter(school__staff=user)
    return registrants.none()


def get_municipality(user: User, code: str) -> Municipality:
    try:
        return municipalities_for(user).get(code=code)
    except Municipality.DoesNotExist:
        raise Http404 from None


def get_school(user: User, school_id: int) -> School:
    try:
        return schools_for(user).get(pk=school_id)
    except School.DoesNotExist:
        raise Http404 from None


def get_registrant(user: User, registrant_id: int) -> Registrant:
    try:
        return registrants_for(user).get(pk=registrant_id)
    except Registrant.DoesNotExist:
        raise Http404 from None


def can_manage_municipalities(user: User) -> bool:
    return user.is_console_user and user.role == Role.CENTRE


def can_manage_schools(user: User) -> bool:
    """May add schools (in municipalities reached through get_municipality)."""
    if not user.is_console_user:
        return False
    return user.role in (Role.CENTRE, Role.MUNICIPALITY)


def guardian_registrant(user: User) -> Registrant:
    """The registrant a guardian manages; 404 for anyone else, including staff."""
    if not user.is_authenticated or user.role != "" or not user.is_active:
        raise Http404
    try:
        registrant = Registrant.objects.select_related("school__municipality").get(account=user)
    except Registrant.DoesNotExist:
        raise Http404 from None
    if not registrant.is_active:
        raise Http404
    return registrant


def broadcasts_for(user: User) -> QuerySet[Broadcast]:
    """Broadcasts every school of which lies in the user's scope.

    School staff thus see their own school's broadcasts, not a city-wide one (which also
    reaches other schools), and never another school's.
    """
    broadcasts = Broadcast.objects.all()
    if not user.is_console_user:
        return broadcasts.none()
    if user.role == Role.CENTRE:
        return broadcasts
    if user.role == Role.MUNICIPALITY:
        own = Municipality.objects.filter(staff=user)
        return (
            broadcasts.filter(Q(municipalities__in=own) | Q(schools__municipality__in=own))
            .exclude(municipalities__in=Municipality.objects.exclude(staff=user))
            .exclude(schools__in=School.objects.exclude(municipality__in=own))
            .distinct()
        )
    if user.role == Role.SCHOOL:
        own_school = School.objects.filter(staff=user)
        return (
            broadcasts.filter(schools__in=own_school, municipalities=None)
            .exclude(schools__in=School.objects.exclude(staff=user))
            .distinct()
        )
    return broadcasts.none()


def get_broadcast(user: User, broadcast_id: int) -> Broadcast:
    try:
        return broadcasts_for(user).get(pk=broadcast_id)
    except Broadcast.DoesNotExist:
        raise Http404 from None


def inquiries_for(user: User) -> QuerySet[Inquiry]:
    """Support-desk inquiries: centre all, municipality staff their municipality's.

    School staff see only inquiries sent by logged-in guardians of their own school: an
    anonymous inquiry names only a municipality, and is the municipality's desk's to answer.
    """
    inquiries = Inquiry.objects.select_related("municipality", "registrant__school", "answered_by")
    if not user.is_console_user:
        return inquiries.none()
    if user.role == Role.CENTRE:
        return inquiries.all()
    if user.role == Role.MUNICIPALITY:
        return inquiries.filter(municipality__staff=user)
    if user.role == Role.SCHOOL:
        return inquiries.filter(registrant__school__staff=user)
    return inquiries.none()


def get_inquiry(user: User, inquiry_id: int) -> Inquiry:
    try:
        return inquiries_for(user).get(pk=inquiry_id)
    except Inquiry.DoesNotExist:
        raise Http404 from None


def deregistration_requests_for(user: User) -> QuerySet[DeregistrationRequest]:
    """登録解除届 of the registrants the user reaches (a guardian reaches none here: see
    guardian_registrant)."""
    requests = DeregistrationRequest.objects.select_related("registrant__school__municipality")
    if not user.is_console_user:
        return requests.none()
    return requests.filter(registrant__in=registrants_for(user).values("pk"))


def incoming_transfers_for(user: User, school: School) -> QuerySet[DeregistrationRequest]:
    """Approved transfers within the city into ``school`` that its staff have not registered yet.

    The old registration lies outside a school's staff's scope; they see only what the
    request says (name, grade, class) and may copy its addresses into the new registration.
    """
    if not schools_for(user).filter(pk=school.pk).exists():
        return DeregistrationRequest.objects.none()
    return DeregistrationRequest.objects.select_related("registrant__school").filter(
        status=DeregistrationStatus.APPROVED,
        reason=DeregistrationReason.TRANSFER_WITHIN,
        destination_school=school,
        new_registrant__isnull=True,
        registrant__erased_at__isnull=True,
        registrant__school__municipality_id=school.municipality_id,
    )


def audit_events_for(user: User) -> QuerySet[AuditEvent]:
    """The audit log a staff member may read: centre all, municipality staff their own city's.

    School staff read none: the log names other schools' staff and guardians of the city.
    """
    events = AuditEvent.objects.all()
    if not user.is_console_user:
        return events.none()
    if user.role == Role.CENTRE:
        return events
    if user.role == Role.MUNICIPALITY and user.municipality_id is not None:
        return events.filter(municipality_id=user.municipality_id)
    return events.none()


def can_read_audit_log(user: User) -> bool:
    return user.is_console_user and user.role in (Role.CENTRE, Role.MUNICIPALITY)

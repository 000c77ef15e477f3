"""The one place that decides what a signed-in user may reach (P9).

Every console view, API endpoint and guardian page fetches objects through these
functions. Objects outside the user's scope are reported as missing (404), not forbidden,
so an outsider cannot learn that they exist.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from mimamori.accounts.models import Role, User
from mimamori.broadcasts.models import Broadcast
from mimamori.registry.models import Municipality, Registrant, School


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

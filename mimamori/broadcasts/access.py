"""Which broadcasts a signed-in user may reach (P9); outside their scope a broadcast is missing
(404), not forbidden (see accounts/access.py)."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from mimamori.accounts.models import Role, User
from mimamori.broadcasts.models import Broadcast
from mimamori.registry.models import Municipality, School


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

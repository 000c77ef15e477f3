"""How a staff member's role bounds what they may reach (P9), and who may read the audit log.

Each app decides for its own objects, in its own access.py (registry, broadcasts, support),
with in_scope() below; every console view, API endpoint and guardian page fetches objects
through those functions. Objects outside the user's scope are reported as missing (404), not
forbidden, so an outsider cannot learn that they exist.
"""

from __future__ import annotations

from typing import TypeVar

from django.db.models import Model, Q, QuerySet

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent

M = TypeVar("M", bound=Model)


def in_scope(user: User, objects: QuerySet[M], *, municipality: str, school: str) -> QuerySet[M]:
    """The ``objects`` a staff member reaches: every one for the centre; for municipality staff
    those whose ``municipality`` lookup leads to the user (e.g. ``"school__municipality__staff"``),
    for school staff those whose ``school`` lookup does; none for guardians and inactive logins."""
    if not user.is_console_user:
        return objects.none()
    if user.role == Role.CENTRE:
        return objects.all()
    if user.role == Role.MUNICIPALITY:
        return objects.filter(**{municipality: user})
    if user.role == Role.SCHOOL:
        return objects.filter(**{school: user})
    return objects.none()


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


def staff_for(user: User) -> QuerySet[User]:
    """Staff logins whose password ``user`` may reset and whose lockout they may lift (P11):
    the centre every other staff member; municipality staff the other staff of their city (its
    municipality staff and its schools' staff); school staff nobody."""
    staff = User.objects.exclude(role="").exclude(pk=user.pk).select_related("municipality", "school")
    if not user.is_console_user:
        return staff.none()
    if user.role == Role.CENTRE:
        return staff
    if user.role == Role.MUNICIPALITY and user.municipality_id is not None:
        return staff.filter(
            Q(role=Role.MUNICIPALITY, municipality_id=user.municipality_id)
            | Q(role=Role.SCHOOL, school__municipality_id=user.municipality_id)
        )
    return staff.none()


def can_manage_staff(user: User) -> bool:
    return user.is_console_user and user.role in (Role.CENTRE, Role.MUNICIPALITY)

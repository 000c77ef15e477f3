"""What of the registry a signed-in user may reach (P9): municipalities, schools, registrants,
their deregistration requests, and the guardian's own registrant.

Objects outside the user's scope are reported as missing (404), not forbidden, so an outsider
cannot learn that they exist (see accounts/access.py).
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.http import Http404

from mimamori.accounts.access import in_scope, staff_for
from mimamori.accounts.models import Role, User
from mimamori.registry.models import (
    DeregistrationReason,
    DeregistrationRequest,
    DeregistrationStatus,
    Municipality,
    ReachTest,
    Registrant,
    School,
)


def municipalities_for(user: User) -> QuerySet[Municipality]:
    return in_scope(user, Municipality.objects.all(), municipality="staff", school="schools__staff")


def schools_for(user: User) -> QuerySet[School]:
    schools = School.objects.select_related("municipality")
    return in_scope(user, schools, municipality="municipality__staff", school="staff")


def registrants_for(user: User) -> QuerySet[Registrant]:
    registrants = Registrant.objects.select_related("school__municipality", "account")
    return in_scope(user, registrants, municipality="school__municipality__staff", school="school__staff")


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


def reach_tests_for(user: User) -> QuerySet[ReachTest]:
    """到達テスト of the schools the user reaches."""
    tests = ReachTest.objects.select_related("school__municipality", "started_by")
    return in_scope(user, tests, municipality="school__municipality__staff", school="school__staff")


def get_reach_test(user: User, reach_test_id: int) -> ReachTest:
    try:
        return reach_tests_for(user).get(pk=reach_test_id)
    except ReachTest.DoesNotExist:
        raise Http404 from None


def can_manage_municipalities(user: User) -> bool:
    return user.is_console_user and user.role == Role.CENTRE


def can_see_mail_domain_records(user: User) -> bool:
    """May see the DNS records (SPF, DKIM, DMARC) of the mail domains of the municipalities
    reached through get_municipality: the support centre and municipality staff, who run them."""
    return user.is_console_user and user.role in (Role.CENTRE, Role.MUNICIPALITY)


def can_change_emblem(user: User) -> bool:
    """May upload or remove the emblem (市章) of the municipalities reached through
    get_municipality: the support centre (any) and municipality staff (their own); not schools."""
    return user.is_console_user and user.role in (Role.CENTRE, Role.MUNICIPALITY)


def staff_municipality(user: User) -> Municipality | None:
    """The municipality a municipality or school staff member works for; None for the centre
    and anyone else."""
    if not user.is_authenticated or not user.is_console_user:
        return None
    if user.role == Role.MUNICIPALITY:
        return user.municipality
    if user.role == Role.SCHOOL and user.school is not None:
        return user.school.municipality
    return None


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


def logins_for(user: User) -> QuerySet[User]:
    """Logins whose lockout ``user`` may lift: the guardians of the registrants they reach and
    the staff below them (accounts.access.staff_for)."""
    guardians = registrants_for(user).values("account_id")
    return User.objects.filter(Q(pk__in=guardians) | Q(pk__in=staff_for(user).values("pk")))

"""The attendance check (B11): at each school's time on a school day, the children with no 登校
pass and no 欠席連絡 are listed for staff and, where the municipality chose so, their guardians are
told 「まだ登校が確認できていません」 once.

- The sweep (every worker, every few seconds) makes the list of each school whose time has
  passed today and which has none yet: AttendanceCheck is unique per school and day, so two
  workers racing make one list and post one set of mails.
- A 登校 pass is any ``in`` pass of the day with a known child, whatever its outcome: a repeat
  read or an old backlog still proves the child arrived.
- Guardians are told at the child's gate slots (GatePreference; all four when the guardian chose
  nothing): this is the gate service, whose mails the guardian chose where to receive, not a
  broadcast. One mail per address, none to a suppressed one.
- Late: if the workers were down at the check time, the list is still made when they return (staff
  need it), but guardians are told only within MAIL_WITHIN of the check time; a 「まだ登校が…」 at
  15:00 about a child who has long been at school would only frighten a family.
- A pass or report that arrives after the list was made does not change the list: the console
  shows, beside each row, who has since arrived or been reported (``listed``), computed when shown.
"""

from __future__ import annotations

import datetime
import functools
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from mimamori import tasking
from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.gates import calendar
from mimamori.gates.models import (
    Absence,
    AttendanceCheck,
    Direction,
    GatePass,
    MissingChild,
    MunicipalityGateSettings,
    PassOutcome,
    SchoolGateSettings,
)
from mimamori.gates.preferences import gate_addresses
from mimamori.mail import messages, outbox
from mimamori.registry.mails import school_sender
from mimamori.registry.models import (
    Municipality,
    Registrant,
    RegistrantStatus,
    School,
)

log = logging.getLogger(__name__)

# Guardians are told only this long after the school's check time (see the module's docstring).
MAIL_WITHIN = datetime.timedelta(hours=2)


def day_bounds(day: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
    """The start of ``day`` and of the next, in the installation's time zone."""
    zone = timezone.get_current_timezone()
    start = datetime.datetime.combine(day, datetime.time.min, tzinfo=zone)
    end = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone)
    return start, end


def arrived(day: datetime.date) -> Exists:
    """An ``in`` pass of the child on ``day`` (for Registrant querysets)."""
    start, end = day_bounds(day)
    return Exists(
        GatePass.objects.filter(
            registrant=OuterRef("pk"), direction=Direction.IN, at__gte=start, at__lt=end
        ).exclude(outcome=PassOutcome.UNKNOWN)
    )


def reported(day: datetime.date) -> Exists:
    """A live 欠席連絡 (absent or late) of the child for ``day`` (for Registrant querysets)."""
    return Exists(Absence.objects.filter(registrant=OuterRef("pk"), day=day, withdrawn_at__isnull=True))


def missing(school: School, day: datetime.date) -> QuerySet[Registrant]:
    """The school's active children with neither a 登校 pass nor a 欠席連絡 for ``day``."""
    return (
        Registrant.objects.filter(school=school, status=RegistrantStatus.ACTIVE)
        .exclude(arrived(day))
        .exclude(reported(day))
        .order_by("grade", "class_name", "child_name_kana", "pk")
    )


def check_due(now: datetime.datetime) -> dict[str, int]:
    """The sweep's step: make the list of every school whose time has come today."""
    local = timezone.localtime(now)
    today = local.date()
    done_today = AttendanceCheck.objects.filter(school=OuterRef("school"), day=today)
    due = list(
        SchoolGateSettings.objects.filter(check_time__isnull=False, check_time__lte=local.time())
        .exclude(Exists(done_today))
        .select_related("school__municipality")
    )
    if not due:
        return {"attendance_checks": 0, "attendance_told": 0}
    open_today = calendar.school_days([entry.school for entry in due], today)
    checks = told = 0
    for entry in due:
        if entry.school_id not in open_today:
            continue  # a closed day: no list, nothing sent
        assert entry.check_time is not None
        check_at = datetime.datetime.combine(today, entry.check_time, tzinfo=timezone.get_current_timezone())
        made = make(entry.school, today, tell=now - check_at <= MAIL_WITHIN)
        if made is not None:
            checks += 1
            told += made.guardians_told
    return {"attendance_checks": checks, "attendance_told": told}


def tells_guardians(school: School) -> bool:
    return MunicipalityGateSettings.objects.filter(
        municipality_id=school.municipality_id, tell_guardians=True
    ).exists()


def make(school: School, day: datetime.date, *, tell: bool = True) -> AttendanceCheck | None:
    """Make the school's list for ``day`` once; None when it exists already (another worker)."""
    try:
        with transaction.atomic():
            check = AttendanceCheck.objects.create(school=school, day=day)
            children = list(missing(school, day).select_related("school__municipality"))
            MissingChild.objects.bulk_create(
                MissingChild(attendance_check=check, registrant=child) for child in children
            )
            check.missing = len(children)
            if tell and children and tells_guardians(school):
                check.guardians_told = _tell_guardians(children)
            check.save(update_fields=["missing", "guardians_told"])
    except IntegrityError:
        return None  # the list of that school and day was made meanwhile
    log.info(
        "attendance check %s %s: %d missing, %d told", school.pk, day, check.missing, check.guardians_told
    )
    return check


def _tell_guardians(children: list[Registrant]) -> int:
    posted = 0
    addresses = gate_addresses(child.pk for child in children)
    for child in children:
        municipality = child.school.municipality
        for email in addresses.get(child.pk, []):
            outbox.post(
                functools.partial(missing_mail, child, email),
                to=email,
                kind="gate_missing",
                target=f"registrant {child.pk}",
                municipality=municipality,
                domain=municipality.mail_domain,
                queue=tasking.GATES,
            )
            posted += 1
    return posted


def missing_mail(child: Registrant, email: str) -> EmailMessage:
    """「まだ登校が確認できていません」: no 登校 pass and no 欠席連絡 by the school's time."""
    school = child.school
    return messages.build(
        "gates/mail/gate_missing",
        {
            "school": school,
            "municipality": school.municipality,
            "registrant": child,
            "site_url": settings.BASE_URL + "/portal/absences/",
        },
        sender=school_sender(school),
        to=email,
        domain=school.municipality.mail_domain,
    )


@dataclass(frozen=True)
class ListedChild:
    """A row of a list, and whether the child has since arrived or been reported."""

    registrant: Registrant
    since_arrived: bool
    since_reported: bool

    @property
    def still_missing(self) -> bool:
        return not (self.since_arrived or self.since_reported)


def _rows(check: AttendanceCheck) -> QuerySet[MissingChild]:
    day = check.day
    start, end = day_bounds(day)
    passes = GatePass.objects.filter(
        registrant=OuterRef("registrant"), direction=Direction.IN, at__gte=start, at__lt=end
    ).exclude(outcome=PassOutcome.UNKNOWN)
    reports = Absence.objects.filter(registrant=OuterRef("registrant"), day=day, withdrawn_at__isnull=True)
    return (
        MissingChild.objects.filter(attendance_check=check)
        .select_related("registrant")
        .annotate(since_arrived=Exists(passes), since_reported=Exists(reports))
        .order_by("registrant__grade", "registrant__class_name", "registrant__child_name_kana", "pk")
    )


def listed(check: AttendanceCheck) -> list[ListedChild]:
    """The list's rows by grade and class, each with what happened since (one query)."""
    return [
        ListedChild(row.registrant, bool(row.since_arrived), bool(row.since_reported))  # type: ignore[attr-defined]
        for row in _rows(check)
    ]


def still_missing(check: AttendanceCheck) -> QuerySet[MissingChild]:
    return _rows(check).filter(Q(since_arrived=False) & Q(since_reported=False))


def check_time_of(school: School) -> datetime.time | None:
    return SchoolGateSettings.objects.filter(school=school).values_list("check_time", flat=True).first()


def set_check_time(
    school: School, check_time: datetime.time | None, *, by: User | None, request: HttpRequest | None = None
) -> bool:
    """The school's check time (None: no check); audited. False when nothing changed."""
    with transaction.atomic():
        row, _created = SchoolGateSettings.objects.select_for_update().get_or_create(school=school)
        if row.check_time == check_time:
            return False
        before = row.check_time
        row.check_time = check_time
        row.save(update_fields=["check_time"])
        record(
            "gates.check_time_changed",
            actor=by,
            target=f"school {school.pk}",
            municipality=school.municipality_id,
            request=request,
            old=before.strftime("%H:%M") if before else None,
            new=check_time.strftime("%H:%M") if check_time else None,
        )
    return True


def set_tell_guardians(
    municipality: Municipality, tell: bool, *, by: User | None, request: HttpRequest | None = None
) -> bool:
    """Whether the guardians of a child not yet arrived are told; audited. False when unchanged."""
    with transaction.atomic():
        row, _created = MunicipalityGateSettings.objects.select_for_update().get_or_create(
            municipality=municipality
        )
        if row.tell_guardians == tell:
            return False
        row.tell_guardians = tell
        row.save(update_fields=["tell_guardians"])
        record(
            "gates.tell_guardians_changed",
            actor=by,
            target=f"municipality {municipality.code}",
            municipality=municipality,
            request=request,
            old=not tell,
            new=tell,
        )
    return True

"""到達テスト (B4): a short test mail to every address of a school, to find the addresses mail no
longer reaches before an emergency does.

- **Who gets one.** Every distinct address (lower-cased) in slots 1–4 of every active
  registrant of the school, whatever 連絡メールを受信する says: the test asks whether mail
  reaches the address, not whether the guardian wants broadcasts, and an address that is dead
  today is dead the day the option is turned on again (maintenance notices reach the same
  addresses, registrations mails every slot too). Siblings sharing an address get one mail
  that names both. A suppressed address is not mailed (mail to it is what carriers block a
  sender for); it is counted and listed as such.
- **The mail** (registry/mails.py ``reach_test``) comes from the school, says it is a test
  and that nothing needs doing, and where addresses are changed.
- **One reliable path.** Each mail goes through the outbox (mail/outbox.py) as kind
  ``reach_test`` with the test's ``target``: 4xx retried with backoff, 5xx failed with the
  server's words, a later bounce (``mimamori bounce``) fails the same row, and every failure
  counts towards the address's health (registry/health.py) through the outbox's signal. A
  test's results are therefore its mails' rows, read live: a bounce an hour later changes
  them.
- **Started by** staff (console: school page) or by the municipality's schedule
  (``reach_test_interval_days``, the sweep step ``due_reach_tests``), which sends between
  DAY_STARTS and DAY_ENDS local time only and one school at a time.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.mail import outbox
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry import health, mails
from mimamori.registry.models import (
    Address,
    AddressStatus,
    Municipality,
    ReachTest,
    ReachTestSlot,
    Registrant,
    RegistrantStatus,
    School,
)

log = logging.getLogger(__name__)

KIND = "reach_test"  # OutgoingMail.kind of its mails
# A scheduled test goes out only in the day: a mail from the school at night wakes a household
# and reads like an emergency; staff follow the results up during the day anyway.
DAY_STARTS, DAY_ENDS = time(9), time(18)
WAITING = (OutgoingStatus.PENDING, OutgoingStatus.SENDING, OutgoingStatus.DEFERRED)


class ReachTestRefused(Exception):
    """Why a test cannot start now; the message is for staff."""


@dataclass(frozen=True)
class Plan:
    """What a test of a school would mail now: for the confirmation step."""

    registrants: int
    addresses: int  # distinct addresses that would be mailed
    suppressed: int  # distinct addresses left out


@dataclass(frozen=True)
class Counts:
    """A test's outcome by distinct address."""

    sent: int = 0
    waiting: int = 0
    failed: int = 0
    suppressed: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.waiting + self.failed + self.suppressed


def _addresses(school: School) -> QuerySet[Any]:
    """The school's addresses that a test reaches, each with ``key``, its lower-cased form."""
    return (
        Address.objects.filter(registrant__school=school, registrant__status=RegistrantStatus.ACTIVE)
        .exclude(email="")
        .annotate(key=Lower("email"))
    )


def plan(school: School) -> Plan:
    rows = _addresses(school)
    every = rows.values("key").distinct().count()
    suppressed = rows.filter(status=AddressStatus.SUPPRESSED).values("key").distinct().count()
    registrants = Registrant.objects.filter(school=school, status=RegistrantStatus.ACTIVE).count()
    return Plan(registrants=registrants, addresses=every - suppressed, suppressed=suppressed)


def sample(school: School) -> EmailMessage | None:
    """The mail the first address that would be mailed gets, for the confirmation step."""
    for held in _by_address(school):
        if all(address.status != AddressStatus.SUPPRESSED for address in held):
            return mails.reach_test(school, held[0].email, [(a.registrant, a.slot) for a in held])
    return None


def start(school: School, *, by: User, request: HttpRequest | None = None) -> ReachTest:
    """Start a test of ``school`` now, by a staff member (whose scope the caller checked).

    Refused while the school's last test still has mails on their way (retries last up to
    about an hour), so a second click or a colleague's press does not mail everyone twice.
    """
    with transaction.atomic():
        # The row lock makes two clicks (or a click and the schedule) take turns.
        locked = School.objects.select_for_update().select_related("municipality").get(pk=school.pk)
        last = ReachTest.objects.filter(school=locked).first()
        if last is not None and _mails(last).filter(status__in=WAITING).exists():
            raise ReachTestRefused(
                _(
                    "The last reach test of this school is still being sent. "
                    "Start another once its results are in (at most about an hour)."
                )
            )
        return _begin(locked, by=by, now=timezone.now(), request=request)


def _begin(
    school: School, *, by: User | None, now: datetime, request: HttpRequest | None = None
) -> ReachTest:
    """Write the test and queue its mails, in the caller's transaction."""
    test = ReachTest.objects.create(school=school, scheduled=by is None, started_by=by, started_at=now)
    municipality = school.municipality
    rows: list[ReachTestSlot] = []
    mailed = suppressed = 0
    for held in _by_address(school):
        mail = None
        # Every row of one address has its status (registry/health.py).
        if any(address.status == AddressStatus.SUPPRESSED for address in held):
            suppressed += 1
        else:
            message = mails.reach_test(school, held[0].email, [(a.registrant, a.slot) for a in held])
            mail = outbox.post(
                message,
                kind=KIND,
                target=test.target,
                municipality=municipality,
                domain=municipality.mail_domain,
            )
            mailed += 1
        rows.extend(
            ReachTestSlot(reach_test=test, registrant=a.registrant, slot=a.slot, email=a.email, mail=mail)
            for a in held
        )
    ReachTestSlot.objects.bulk_create(rows, batch_size=1000)
    test.address_count, test.suppressed_count = mailed, suppressed
    test.save(update_fields=["address_count", "suppressed_count"])
    record(
        "reach_test.started",
        actor=by,
        target=test.target,
        municipality=municipality,
        request=request,
        school=school.pk,
        scheduled=by is None,
        addresses=mailed,
        suppressed=suppressed,
    )
    log.info(
        "reach test %s of school %s: %s addresses, %s suppressed", test.pk, school.pk, mailed, suppressed
    )
    return test


def _by_address(school: School) -> Iterator[list[Address]]:
    """The school's addresses, the rows of each distinct address together (siblings)."""
    rows = (
        _addresses(school)
        .select_related("registrant")
        .order_by(
            "key",
            "registrant__grade",
            "registrant__class_name",
            "registrant__child_name_kana",
            "registrant_id",
            "slot",
        )
    )
    for _key, held in itertools.groupby(rows.iterator(chunk_size=2000), key=lambda a: a.key):
        yield list(held)


# --- the schedule ------------------------------------------------------------------------


def due_reach_tests(now: datetime) -> int:
    """The sweep step: start the test of the school most overdue under its municipality's
    ``reach_test_interval_days``, if it is day and no other test's mails are still queued.

    One school per sweep and one at a time, so a city that turns the schedule on does not put
    tens of thousands of test mails in the mail queue at once, ahead of 登録完了メール.
    """
    if not DAY_STARTS <= timezone.localtime(now).time() < DAY_ENDS:
        return 0
    if OutgoingMail.objects.filter(
        kind=KIND, status__in=[OutgoingStatus.PENDING, OutgoingStatus.SENDING]
    ).exists():
        return 0  # the last test's mails are still going out (retries do not hold the next)
    candidates = []
    for city in Municipality.objects.filter(reach_test_interval_days__gt=0).only("reach_test_interval_days"):
        cutoff = now - timedelta(days=city.reach_test_interval_days)
        school = (
            School.objects.filter(municipality=city)
            .annotate(last=Max("reach_tests__started_at"))
            .filter(Q(last__isnull=True) | Q(last__lte=cutoff))
            .order_by(F("last").asc(nulls_first=True), "pk")
            .values_list("pk", "last")
            .first()
        )
        if school is not None:
            candidates.append((school[1] is not None, school[1], school[0], cutoff))
    # Never tested first, then the longest ago.
    for _tested, _last, school_id, cutoff in sorted(candidates, key=lambda c: c[:3]):
        if _start_scheduled(school_id, cutoff, now):
            return 1
    return 0


def _start_scheduled(school_id: int, cutoff: datetime, now: datetime) -> bool:
    with transaction.atomic():
        # Sweeps on several workers look at once; the lock makes them take turns, and the
        # second finds the test the first started.
        school = School.objects.select_for_update().select_related("municipality").get(pk=school_id)
        if ReachTest.objects.filter(school=school, started_at__gt=cutoff).exists():
            return False
        _begin(school, by=None, now=now)
    return True


# --- results -----------------------------------------------------------------------------


def _mails(test: ReachTest) -> QuerySet[OutgoingMail]:
    return OutgoingMail.objects.filter(target=test.target, kind=KIND)


def counts(tests: Iterable[ReachTest]) -> dict[int, Counts]:
    """Each test's outcome by distinct address (one mail each), from its mails as they are now."""
    tests = list(tests)
    by_target: dict[str, dict[str, int]] = {test.target: {} for test in tests}
    grouped = (
        OutgoingMail.objects.filter(kind=KIND, target__in=list(by_target))
        .order_by()
        .values("target", "status")
        .annotate(n=Count("pk"))
    )
    for row in grouped:
        by_target[row["target"]][row["status"]] = row["n"]
    found = {}
    for test in tests:
        statuses = by_target[test.target]
        found[test.pk] = Counts(
            sent=statuses.get(OutgoingStatus.SENT, 0),
            waiting=sum(statuses.get(status, 0) for status in WAITING),
            failed=statuses.get(OutgoingStatus.FAILED, 0),
            suppressed=test.suppressed_count,
        )
    return found


RESULTS = {
    "sent": Q(mail__status=OutgoingStatus.SENT),
    "waiting": Q(mail__status__in=WAITING),
    "failed": Q(mail__status=OutgoingStatus.FAILED),
    "suppressed": Q(mail__isnull=True),
}


def results(test: ReachTest, result: str = "") -> QuerySet[ReachTestSlot]:
    """The test's slots with their mail, by grade, class and name; ``result`` one of RESULTS."""
    rows = ReachTestSlot.objects.filter(reach_test=test)
    if result:
        rows = rows.filter(RESULTS[result])
    return (
        rows.select_related("registrant", "mail")
        .defer("mail__message")
        .order_by(
            "registrant__grade",
            "registrant__class_name",
            "registrant__child_name_kana",
            "registrant_id",
            "slot",
        )
    )


def follow_up(test: ReachTest) -> QuerySet[Any]:
    """The school's 「届かないアドレス」 (health.undeliverable) narrowed to the addresses this test
    found dead: its mail failed (refused, given up, or bounced since) or it was suppressed.

    What the guardian has fixed since (the address set again, or changed) is no longer
    undeliverable and drops out: the list is what is left to follow up. A failure that was
    not the address's (the relay refused our sender) marks no address and is not listed.
    """
    dead_here = (
        ReachTestSlot.objects.filter(reach_test=test, registrant=OuterRef("registrant_id"))
        .filter(RESULTS["failed"] | RESULTS["suppressed"])
        .annotate(key=Lower("email"))
        .filter(key=Lower(OuterRef("email")))
    )
    return health.undeliverable(test.school).filter(Exists(dead_here))


def forget(registrant: Registrant) -> None:
    """Erasing a child (registry/retention.py): its tested slots go, and the test mails that
    were only its own (a sibling's shared mail stays, with the sibling's row)."""
    rows = ReachTestSlot.objects.filter(registrant=registrant)
    mail_ids = set(rows.exclude(mail=None).values_list("mail_id", flat=True))
    rows.delete()
    kept = set(ReachTestSlot.objects.filter(mail_id__in=mail_ids).values_list("mail_id", flat=True))
    OutgoingMail.objects.filter(pk__in=mail_ids - kept).delete()


def last_tests(school: School, limit: int = 10) -> Sequence[ReachTest]:
    return list(ReachTest.objects.filter(school=school).select_related("started_by")[:limit])

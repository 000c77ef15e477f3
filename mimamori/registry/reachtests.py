"""到達テスト (B4): a short test mail to every address of a school, to find the addresses mail no
longer reaches before an emergency does.

- **Who gets one.** Every distinct address (lower-cased) in slots 1–4 of every active
  registrant of the school, whatever 連絡メールを受信する says: the test asks whether mail
  reaches the address, not whether the guardian wants broadcasts, and an address that is dead
  today is dead the day the option is turned on again (maintenance notices reach the same
  addresses, and the 登録完了メール goes to every slot too). Siblings sharing an address get
  one mail that names both. A suppressed address is not mailed (mail to it is what carriers block a
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
  DAY_STARTS and DAY_ENDS local time only and one school at a time. Starting records the test;
  a task writes its mails (``post``), so neither a request nor the sweep waits for them.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Lower
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from mimamori import tasking
from mimamori.accounts.models import User
from mimamori.audit.log import record
from mimamori.mail import outbox
from mimamori.mail.messages import BUILD_ERRORS
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
BATCH = 200  # addresses written per transaction
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
    rows = _addresses(school)
    first = (
        rows.exclude(status=AddressStatus.SUPPRESSED).order_by("key").values_list("key", flat=True).first()
    )
    if first is None:
        return None
    held = list(_in_order(rows.filter(key=first)))
    try:
        return mails.reach_test(school, held[0].email, [(a.registrant, a.slot) for a in held])
    except BUILD_ERRORS:
        return None  # data stored before the input rule: its mails fail with the reason


def start(school: School, *, by: User, request: HttpRequest | None = None) -> ReachTest:
    """Start a test of ``school`` now, by a staff member (whose scope the caller checked).

    Refused while the school's last test is still being written or has mails on their way
    (retries last up to about an hour), so a second click or a colleague's press does not mail
    everyone twice.
    """
    with transaction.atomic():
        # The row lock makes two clicks (or a click and the schedule) take turns.
        locked = School.objects.select_for_update().select_related("municipality").get(pk=school.pk)
        last = ReachTest.objects.filter(school=locked).first()
        if last is not None and (last.posted_at is None or _mails(last).filter(status__in=WAITING).exists()):
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
    """Record the test and queue the task that writes its mails, in the caller's transaction.

    A school's mails take a few milliseconds each to build and queue (seconds for a large
    school), so neither the staff member's request nor the sweep waits for them.
    """
    test = ReachTest.objects.create(school=school, scheduled=by is None, started_by=by, started_at=now)
    record(
        "reach_test.started",
        actor=by,
        target=test.target,
        municipality=school.municipality,
        request=request,
        school=school.pk,
        scheduled=by is None,
    )
    _queue(test.pk)
    return test


def _queue(test_id: int) -> None:
    from mimamori.registry.tasks import post_reach_test

    # The least urgent work there is: every broadcast's fan-out and chunks go first.
    tasking.enqueue(post_reach_test, test_id, queue=tasking.DEFAULT, priority=-100)


def post(test_id: int) -> int:
    """Write a test's mails (one outbox mail per distinct address) and its slots; returns how
    many mails this call wrote.

    In batches of BATCH addresses, in address order, one transaction each: a large school's
    few seconds of writing never hold SQLite's one write lock at a stretch (an urgent
    broadcast's workers need it too), and a crash loses at most the batch in hand, which the
    next run (the sweep's, after a lost queue message) writes from the last address written.
    A test already written is left alone (a twin task).
    """
    mailed = 0
    while True:
        with transaction.atomic():
            test = (
                ReachTest.objects.select_for_update()
                .select_related("school__municipality")
                .filter(pk=test_id, posted_at__isnull=True)
                .first()
            )
            if test is None:
                return mailed
            done = ReachTestSlot.objects.filter(reach_test=test).aggregate(last=Max(Lower("email")))["last"]
            batch = _next_batch(test.school, after=done)
            if not batch:
                ReachTest.objects.filter(pk=test.pk).update(posted_at=timezone.now())
                log.info("reach test %s of school %s: mails written", test.pk, test.school_id)
                return mailed
            mailed += _write(test, batch)


def _next_batch(school: School, *, after: str | None) -> list[list[Address]]:
    """The next BATCH distinct addresses past ``after`` (lower-cased), each with its rows."""
    rows = _addresses(school)
    if after is not None:
        rows = rows.filter(key__gt=after)
    keys = list(rows.order_by("key").values_list("key", flat=True).distinct()[:BATCH])
    if not keys:
        return []
    held = _in_order(rows.filter(key__lte=keys[-1]))
    return [list(group) for _key, group in itertools.groupby(held, key=lambda a: a.key)]


def _write(test: ReachTest, batch: list[list[Address]]) -> int:
    """One mail per address of ``batch`` (none to a suppressed one), and every slot's row."""
    school = test.school
    municipality = school.municipality
    rows: list[ReachTestSlot] = []
    mailed = suppressed = 0
    for held in batch:
        mail = None
        # Every row of one address has its status (registry/health.py).
        if any(address.status == AddressStatus.SUPPRESSED for address in held):
            suppressed += 1
        else:
            message = functools.partial(
                mails.reach_test, school, held[0].email, [(a.registrant, a.slot) for a in held]
            )
            mail = outbox.post(
                message,
                to=held[0].email,
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
    ReachTestSlot.objects.bulk_create(rows)
    ReachTest.objects.filter(pk=test.pk).update(
        address_count=F("address_count") + mailed, suppressed_count=F("suppressed_count") + suppressed
    )
    return mailed


def _in_order(rows: QuerySet[Any]) -> QuerySet[Any]:
    """By address, and each address's rows by grade, class and name: its mail names the
    children in that order."""
    return rows.select_related("registrant").order_by(
        "key",
        "registrant__grade",
        "registrant__class_name",
        "registrant__child_name_kana",
        "registrant_id",
        "slot",
    )


# --- the schedule ------------------------------------------------------------------------


def due_reach_tests(now: datetime) -> dict[str, int]:
    """The sweep step: queue again the tests whose mails were never written (a queue message
    lost), then start the test of the school most overdue under its municipality's
    ``reach_test_interval_days``, if it is day and no other test is still going out.

    One school per sweep and one at a time, so a city that turns the schedule on does not put
    tens of thousands of test mails in the mail queue at once, ahead of 登録完了メール.
    """
    return {"reach_tests_requeued": _requeue(now), "reach_tests_started": _start_due(now)}


def _requeue(now: datetime) -> int:
    lost = now - timedelta(seconds=settings.MIMAMORI_REQUEUE_AFTER_SECONDS)
    waiting = list(
        ReachTest.objects.filter(posted_at__isnull=True, started_at__lt=lost).values_list("pk", flat=True)
    )
    with transaction.atomic():
        for test_id in waiting:
            _queue(test_id)
    return len(waiting)


def _start_due(now: datetime) -> int:
    if not DAY_STARTS <= timezone.localtime(now).time() < DAY_ENDS:
        return 0
    # The last test is still going out (its mails not yet written, or not yet offered to the
    # relay; retries do not hold the next).
    if ReachTest.objects.filter(posted_at__isnull=True).exists() or (
        OutgoingMail.objects.filter(
            kind=KIND, status__in=[OutgoingStatus.PENDING, OutgoingStatus.SENDING]
        ).exists()
    ):
        return 0
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

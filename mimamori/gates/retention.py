"""How long the gates app keeps what names a child (B6, B11).

- Passes are erased MIMAMORI_GATE_RETENTION_DAYS after they were *recorded*, not after the time
  the reader stamped on them: a reader's clock is not ours (one reset to 1970 would have its
  passes erased on arrival, one set ahead would keep them for ever), and a backlog posted late
  stays listable for the full period after it reached us. recorded_at is indexed for this.
- 欠席連絡 (whose reasons are often about health) and the rows of the exception lists are erased
  the same number of days after their date. The AttendanceCheck rows stay: they hold only
  counts (children missing, guardians told), like GateDayCount for the passes.
- When the registry erases a deregistered child's personal data (registry/retention.py), the
  child's passes, reports, list rows, gate preference and tag id go in the same transaction.

Each sweep erases at most a batch of each, so a first run after a long pause never holds a
transaction long; with nothing to erase it is one indexed query each.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from mimamori.gates.models import Absence, GatePass, GatePreference, MissingChild
from mimamori.registry.models import Registrant

BATCH = 1000


def erase_old(now: datetime.datetime) -> dict[str, int]:
    """The sweep's step."""
    cutoff = now - datetime.timedelta(days=settings.MIMAMORI_GATE_RETENTION_DAYS)
    first_kept_day = timezone.localtime(cutoff).date()
    passes = list(GatePass.objects.filter(recorded_at__lt=cutoff).values_list("pk", flat=True)[:BATCH])
    if passes:
        GatePass.objects.filter(pk__in=passes).delete()
    absences = list(Absence.objects.filter(day__lt=first_kept_day).values_list("pk", flat=True)[:BATCH])
    if absences:
        Absence.objects.filter(pk__in=absences).delete()
    rows = list(
        MissingChild.objects.filter(attendance_check__day__lt=first_kept_day).values_list("pk", flat=True)[
            :BATCH
        ]
    )
    if rows:
        MissingChild.objects.filter(pk__in=rows).delete()
    return {
        "gate_passes_erased": len(passes),
        "absences_erased": len(absences),
        "missing_rows_erased": len(rows),
    }


def erase_registrant(sender: Any, registrant: Registrant, **kwargs: Any) -> None:
    """registry.retention.erasing: the child's gate data goes with its personal data."""
    GatePass.objects.filter(registrant=registrant).delete()
    Absence.objects.filter(registrant=registrant).delete()
    MissingChild.objects.filter(registrant=registrant).delete()
    GatePreference.objects.filter(registrant=registrant).delete()
    # The tag is the child's too (and, unique per school, would stay taken); the registry saves
    # the erased row with named fields only, so this update is not overwritten.
    Registrant.objects.filter(pk=registrant.pk).update(tag_id="")

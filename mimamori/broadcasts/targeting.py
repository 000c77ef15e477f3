"""Who a broadcast reaches (S1, S3, S4, P1, B5).

Active registrants in scope with 連絡メールを受信する on, at the slots their municipality
sends broadcasts to (1 and 2 unless a municipality says otherwise; never 3–4 by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Count, Exists, Q, QuerySet
from django.db.models.functions import Lower
from django.utils.translation import gettext as _

from mimamori import text
from mimamori.accounts.models import User
from mimamori.broadcasts.models import Broadcast, BroadcastKind
from mimamori.registry.access import municipalities_for, schools_for
from mimamori.registry.models import Address, AddressStatus, Municipality, RegistrantStatus, School, class_key


@dataclass(frozen=True)
class Scope:
    municipalities: Sequence[Municipality] = ()
    schools: Sequence[School] = ()
    grades: Sequence[int] = ()
    classes: Sequence[str] = ()
    # Classes of a grade, (grade, class): with them, `grades` are whole grades and `classes`
    # is empty (see resolve_scope).
    groups: Sequence[tuple[int, str]] = ()


def resolve_scope(
    user: User,
    *,
    municipality_codes: Iterable[str] = (),
    school_ids: Iterable[int] = (),
    grades: Iterable[int] = (),
    classes: Iterable[str] = (),
    groups: Iterable[tuple[int, str]] = (),
) -> Scope:
    """Turn what staff asked for into a scope inside their own, or raise ValidationError.

    Nothing named means the user's whole scope, except for the centre, which must choose.

    Without `groups`, the grades and classes named narrow it as grades × classes (either
    empty: all). With `groups`, (grade, class) pairs, it is the whole grades named plus those
    classes of a grade: 3年2組 and 5年1組 reach those two classes and no other. Classes named
    beside groups are crossed with the grades named into pairs (and need grades); a pair in a
    grade named whole adds nothing. Class names are folded as the registry folds them.
    """
    codes = sorted({c.strip() for c in municipality_codes if c.strip()})
    ids = sorted(set(school_ids))
    grade_list = sorted(set(grades))
    class_list = sorted({key for c in classes if (key := class_key(c))})
    named = [(g, class_key(c)) for g, c in groups]
    pairs = set(named)
    errors: dict[str, str] = {}
    if any(not c for _g, c in named):
        # Dropped, it would widen the scope to the whole grade or school: refused instead.
        errors["groups"] = _("Each class chosen needs a class name.")
    if pairs and class_list:
        if not grade_list:
            errors["classes"] = _("Classes of every grade cannot be combined with classes of a grade.")
        pairs |= {(g, c) for g in grade_list for c in class_list}
        grade_list, class_list = [], []
    pair_list = sorted((g, c) for g, c in pairs if g not in grade_list)

    allowed_municipalities = municipalities_for(user)
    # What the input rule refuses cannot name anything in scope, and must not reach the
    # database (a NUL is a server error on PostgreSQL, an id past bigint one on SQLite).
    sound_codes = [c for c in codes if text.is_clean(c)]
    sound_ids = [i for i in ids if 0 < i <= text.MAX_BIGINT]
    municipalities = list(allowed_municipalities.filter(code__in=sound_codes))
    if len(municipalities) != len(codes):
        errors["municipalities"] = _("You can only send to municipalities in your own scope.")
    schools = list(schools_for(user).filter(pk__in=sound_ids))
    if len(schools) != len(ids):
        errors["schools"] = _("You can only send to schools in your own scope.")
    elif municipalities and any(s.municipality not in municipalities for s in schools):
        errors["schools"] = _("The schools chosen are not in the municipalities chosen.")
    if any(not 1 <= g <= 9 for g in grade_list):
        errors["grades"] = _("Grades are numbers from 1 to 9.")
    if problem := next(filter(None, (text.problem(c) for c in class_list)), None):
        errors["classes"] = str(problem)
    if "groups" not in errors:
        if any(not 1 <= g <= 9 for g, _c in pair_list):
            errors["groups"] = _("Grades are numbers from 1 to 9.")
        elif problem := next(filter(None, (text.problem(c) for _g, c in pair_list)), None):
            errors["groups"] = str(problem)
    if not codes and not ids and not errors:
        if user.role == "centre":
            errors["municipalities"] = _("Choose at least one municipality or school.")
        elif user.role == "municipality":
            municipalities = list(allowed_municipalities)
        else:
            schools = list(schools_for(user))
    if errors:
        raise ValidationError(errors)
    return Scope(
        tuple(municipalities), tuple(schools), tuple(grade_list), tuple(class_list), tuple(pair_list)
    )


def save_scope(broadcast: Broadcast, scope: Scope) -> None:
    broadcast.grades = list(scope.grades)
    broadcast.classes = list(scope.classes)
    broadcast.grade_classes = [[g, c] for g, c in scope.groups]
    broadcast.save(update_fields=["grades", "classes", "grade_classes"])
    broadcast.municipalities.set(scope.municipalities)
    broadcast.schools.set(scope.schools)


def target_schools(broadcast: Broadcast) -> QuerySet[School]:
    schools = School.objects.select_related("municipality")
    named = list(broadcast.schools.values_list("pk", flat=True))
    if named:
        return schools.filter(pk__in=named)
    return schools.filter(municipality__in=broadcast.municipalities.all())


def broadcast_municipality(broadcast: Broadcast) -> Municipality | None:
    """The one municipality a broadcast reaches, whose audit log its events go to; None
    (the centre's only) when it spans several."""
    cities = {school.municipality for school in target_schools(broadcast)}
    return cities.pop() if len(cities) == 1 else None


def audience(broadcast: Broadcast) -> QuerySet[Address]:
    """The addresses to send to, one row per (registrant, slot); the caller merges by address.

    Suppressed addresses are left out: mail to them would fail again (registry/health.py).
    """
    return _addressed(broadcast).exclude(status=AddressStatus.SUPPRESSED)


def suppressed_count(broadcast: Broadcast) -> int:
    """Distinct addresses of the audience that get no mail because they are suppressed."""
    counted = _addressed(broadcast).filter(status=AddressStatus.SUPPRESSED)
    return counted.aggregate(n=Count(Lower("email"), distinct=True))["n"]


def is_suppressed(email: Any) -> Exists:
    """True where ``email`` (an expression, e.g. OuterRef("email")) is a suppressed address."""
    rows = Address.objects.filter(status=AddressStatus.SUPPRESSED).annotate(key=Lower("email"))
    return Exists(rows.filter(key=Lower(email)))


def _addressed(broadcast: Broadcast) -> QuerySet[Address]:
    """Every address in the broadcast's scope, whatever mail to it does."""
    return _addressed_in(
        list(target_schools(broadcast)),
        broadcast.kind,
        broadcast.grades,
        broadcast.classes,
        groups_of(broadcast),
    )


def groups_of(broadcast: Broadcast) -> list[tuple[int, str]]:
    """The broadcast's classes of a grade, as (grade, class) pairs."""
    return [(int(g), str(c)) for g, c in broadcast.grade_classes]


def _addressed_in(
    schools: list[School],
    kind: str,
    grades: Sequence[int],
    classes: Sequence[str],
    groups: Sequence[tuple[int, str]] = (),
) -> QuerySet[Address]:
    if not schools:
        return Address.objects.none()
    active = Address.objects.filter(registrant__status=RegistrantStatus.ACTIVE)
    if kind == BroadcastKind.MAINTENANCE:
        # A maintenance notice goes to every registered address, whatever the options (S9).
        addresses = active.filter(registrant__school_id__in=[s.pk for s in schools])
    else:
        # Each municipality decides which slots get broadcasts (S12); the seed's rule is 1 and 2.
        # Said by school ids alone (not by a join to the school's municipality), so that the
        # planner estimates the audience from one column's statistics: with a municipality
        # condition beside the school ids it multiplied the two and expected a few hundred
        # rows of 100,000 (docs/performance.md, "Fan-out on the users' path").
        by_slots: dict[tuple[int, ...], list[int]] = {}
        for school in schools:
            by_slots.setdefault(tuple(sorted(school.municipality.broadcast_slots)), []).append(school.pk)
        slot_rule = Q()
        for slots, school_ids in by_slots.items():
            slot_rule |= Q(registrant__school_id__in=school_ids, slot__in=slots)
        addresses = active.filter(slot_rule, registrant__receive_broadcasts=True)
    if groups:
        # Whole grades, or one of the classes of a grade named (grouped by grade: one
        # condition per grade, not per pair).
        chosen = Q(registrant__grade__in=grades) if grades else Q()
        by_grade: dict[int, list[str]] = {}
        for grade, class_name in groups:
            by_grade.setdefault(grade, []).append(class_name)
        for grade, class_names in sorted(by_grade.items()):
            chosen |= Q(registrant__grade=grade, registrant__class_name__in=class_names)
        return addresses.filter(chosen)
    # Grades × classes (either empty: all).
    if grades:
        addresses = addresses.filter(registrant__grade__in=grades)
    if classes:
        addresses = addresses.filter(registrant__class_name__in=classes)
    return addresses


@dataclass(frozen=True)
class Reach:
    registrants: int
    messages: int


def reach(broadcast: Broadcast) -> Reach:
    """How many registrants and distinct addresses the broadcast would reach now (the preview)."""
    return _reach(audience(broadcast))


def scope_reach(scope: Scope) -> Reach:
    """What a broadcast with this scope would reach now, counted as reach() counts a saved one
    (the compose page's live count, before anything is saved)."""
    schools = {s.pk: s for s in scope.schools} or {
        s.pk: s
        for s in School.objects.select_related("municipality").filter(municipality__in=scope.municipalities)
    }
    addressed = _addressed_in(
        list(schools.values()), BroadcastKind.ALERT, scope.grades, scope.classes, scope.groups
    )
    return _reach(addressed.exclude(status=AddressStatus.SUPPRESSED))


def _reach(addresses: QuerySet[Address]) -> Reach:
    counts = addresses.aggregate(
        registrants=Count("registrant", distinct=True), messages=Count(Lower("email"), distinct=True)
    )
    return Reach(registrants=counts["registrants"], messages=counts["messages"])

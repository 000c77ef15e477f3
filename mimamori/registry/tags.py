"""IC tags on registrants (B6): the tag in a child's school bag that the gate readers read.

A tag id is what the reader sends for the tag: FeliCa IDm and MIFARE UIDs are hex (16 or 8/14
digits), EPC codes 24 hex digits, and some readers write them with ``:`` or ``-`` between the
bytes. So a tag id is 1–64 characters of ASCII letters, digits, ``:``, ``.``, ``_`` and ``-``,
kept as written (case included: the reader's string is matched exactly). Typed input is folded
by NFKC first (full-width digits from Excel or a Japanese keyboard) and trimmed.

A tag belongs to at most one child of a school. Giving a child a tag another active child of the
school carries is refused unless the caller says to move it (a school re-issuing a lost tag):
then the other child loses it, and both changes are audited. A deregistered child's tag is freed
at deregistration; one still left on a deregistered row is taken without asking.
"""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils.translation import gettext as _

from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.registry.models import Registrant, School
from mimamori.registry.registrants import registrant_target

MAX_TAG = 64
TAG_PATTERN = re.compile(r"[0-9A-Za-z:._-]{1,64}")
# For JSON Schema (OpenAPI): a tag id, or "" for no tag; surrounding spaces are trimmed first.
TAG_SCHEMA_PATTERN = r"^\s*([0-9A-Za-z:._-]{1,64})?\s*$"


class TagTaken(Exception):
    """The tag is carried by another child of the school (``holder``)."""

    def __init__(self, tag: str, holder: Registrant) -> None:
        super().__init__(tag)
        self.tag = tag
        self.holder = holder

    @property
    def message(self) -> str:
        return _(
            "The tag %(tag)s is already given to another child of this school "
            "(login ID %(login_id)s, grade %(grade)d class %(class_name)s). "
            "Take it off that child first, or move it on the console."
        ) % {
            "tag": self.tag,
            "login_id": self.holder.account.username,
            "grade": self.holder.grade,
            "class_name": self.holder.class_name,
        }


def normalize_tag(value: str) -> str:
    """A tag id as stored: NFKC-folded and trimmed ("" for none). Not yet checked."""
    return unicodedata.normalize("NFKC", value).strip()


def tag_problem(tag: str) -> str | None:
    """What is wrong with a normalized tag id, in the user's language; None when nothing is."""
    if tag == "" or TAG_PATTERN.fullmatch(tag):
        return None
    if len(tag) > MAX_TAG:
        return _("The tag ID is too long (at most %(max)d characters).") % {"max": MAX_TAG}
    return _("A tag ID may hold only letters A–Z and a–z, digits, and the characters : . _ - (no spaces).")


def clean_tag(value: str) -> str:
    """The normalized tag id; ValidationError (on ``tag_id``) when it breaks the rule."""
    tag = normalize_tag(value)
    if (problem := tag_problem(tag)) is not None:
        raise ValidationError({"tag_id": problem})
    return tag


def find_holder(school: School | int, tag: str, *, exclude: Registrant | None = None) -> Registrant | None:
    """The child of ``school`` that carries ``tag``, if any."""
    if not tag:
        return None
    holders = Registrant.objects.select_related("account").filter(school=school, tag_id=tag)
    if exclude is not None:
        holders = holders.exclude(pk=exclude.pk)
    return holders.first()


def set_tag(
    registrant: Registrant,
    value: str,
    *,
    by: User | None,
    move: bool = False,
    request: HttpRequest | None = None,
) -> bool:
    """Give ``registrant`` the tag ``value`` ("" takes its tag off). Returns whether it changed.

    Raises ValidationError for a tag id that breaks the rule, and TagTaken when another active
    child of the school carries it and ``move`` is False; with ``move`` the tag leaves that child
    ("registrant.tag_reassigned"). Every change of a child's tag is audited ("registrant.tag_changed",
    old → new).
    """
    tag = clean_tag(value)
    municipality = registrant.school.municipality_id
    try:
        with transaction.atomic():
            locked = Registrant.objects.select_for_update().select_related("account").get(pk=registrant.pk)
            if locked.tag_id == tag:
                return False
            holder = find_holder(locked.school_id, tag, exclude=locked)
            if holder is not None:
                if holder.is_active and not move:
                    raise TagTaken(tag, holder)
                holder.tag_id = ""
                holder.save(update_fields=["tag_id", "updated_at"])
                audit.record(
                    "registrant.tag_reassigned",
                    actor=by,
                    target=registrant_target(locked),
                    municipality=municipality,
                    request=request,
                    tag=tag,
                    **{"from": registrant_target(holder), "to": registrant_target(locked)},
                )
            old = locked.tag_id
            locked.tag_id = tag
            locked.save(update_fields=["tag_id", "updated_at"])
            audit.record(
                "registrant.tag_changed",
                actor=by,
                target=registrant_target(locked),
                municipality=municipality,
                request=request,
                old=old,
                new=tag,
            )
    except IntegrityError:
        # Another request gave the tag to a child between the look and the write.
        holder = find_holder(registrant.school_id, tag, exclude=registrant)
        if holder is None:
            raise
        raise TagTaken(tag, holder) from None
    registrant.tag_id = tag
    return True

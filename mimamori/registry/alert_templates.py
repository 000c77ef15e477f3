"""Alert templates (P6): each municipality's ready-made broadcasts, with fields to fill in.

A template's subject and body may name the fields below in braces, e.g. ``{いつ}``; school staff
fill them in a small form (console) and go on to compose with the text that results. Municipality
staff edit their own city's templates and the support centre everyone's (every change audited);
school staff read their city's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mimamori.accounts.access import in_scope
from mimamori.accounts.models import Role, User
from mimamori.audit import log as audit
from mimamori.registry.answers import SAFETY
from mimamori.registry.models import AlertTemplate, Municipality

if TYPE_CHECKING:
    from django.utils.functional import _StrPromise


@dataclass(frozen=True)
class Field:
    key: str  # the form field's name
    placeholder: str  # as written in a template, between braces
    label: _StrPromise
    multiline: bool = False


FIELDS = (
    Field("when", "いつ", _("When")),
    Field("where", "どこで", _("Where")),
    Field("what", "何が", _("What happened")),
    Field("request", "保護者へのお願い", _("What guardians are asked to do"), multiline=True),
)
_BY_PLACEHOLDER = {field.placeholder: field for field in FIELDS}
# Anything in braces that looks like a field's name (no braces or line breaks inside).
_PLACES = re.compile(r"\{([^{}\r\n]{1,32})\}")


def fields_of(template: AlertTemplate) -> list[Field]:
    """The fields the template uses, in the order of FIELDS."""
    used = set(_PLACES.findall(template.subject)) | set(_PLACES.findall(template.body))
    return [field for field in FIELDS if field.placeholder in used]


def unknown_places(value: str) -> list[str]:
    return [name for name in _PLACES.findall(value) if name not in _BY_PLACEHOLDER]


def fill(template: AlertTemplate, values: Mapping[str, str]) -> tuple[str, str]:
    """The subject and body with each field replaced by its value (by the field's key)."""

    def replace(match: re.Match[str]) -> str:
        field = _BY_PLACEHOLDER.get(match.group(1))
        return values.get(field.key, "").strip() if field else match.group(0)

    return _PLACES.sub(replace, template.subject), _PLACES.sub(replace, template.body)


# --- who reaches which ---------------------------------------------------------------------


def templates_for(user: User) -> QuerySet[AlertTemplate]:
    """The templates a staff member reads: the centre all, others their own city's."""
    found = AlertTemplate.objects.select_related("municipality")
    return in_scope(user, found, municipality="municipality__staff", school="municipality__schools__staff")


def get_template(user: User, template_id: int) -> AlertTemplate:
    try:
        return templates_for(user).get(pk=template_id)
    except AlertTemplate.DoesNotExist:
        raise Http404 from None


def can_edit_templates(user: User) -> bool:
    """Municipality staff (their city's) and the support centre (all) edit templates."""
    return user.is_console_user and user.role in (Role.CENTRE, Role.MUNICIPALITY)


def editable_template(user: User, template_id: int) -> AlertTemplate:
    """A template the user may change; 404 for anything else, as for one out of scope."""
    if not can_edit_templates(user):
        raise Http404
    return get_template(user, template_id)


# --- changes ---------------------------------------------------------------------------------


def check(template: AlertTemplate) -> None:
    """Field rules beyond the model's: a name unique in its city, only known fields in braces."""
    template.full_clean(exclude=["municipality"], validate_unique=False)
    errors: dict[str, list[str]] = {}
    for name in ("subject", "body"):
        if unknown := unknown_places(getattr(template, name)):
            errors[name] = [
                gettext("Unknown field %(unknown)s. The fields are %(known)s.")
                % {
                    "unknown": "、".join(f"{{{u}}}" for u in unknown),
                    "known": "、".join(f"{{{f.placeholder}}}" for f in FIELDS),
                }
            ]
    clash = AlertTemplate.objects.filter(municipality=template.municipality, name=template.name)
    if clash.exclude(pk=template.pk).exists():
        errors["name"] = [gettext("This municipality already has a template of this name.")]
    if errors:
        raise ValidationError(errors)


def save(template: AlertTemplate, by: User) -> AlertTemplate:
    """Create or change a template (checked first); audited."""
    check(template)
    created = template.pk is None
    with transaction.atomic():
        template.save()
        audit.record(
            "alert_template.created" if created else "alert_template.changed",
            actor=by,
            target=f"alert_template {template.pk}",
            municipality=template.municipality,
            name=template.name,
        )
    return template


def delete(template: AlertTemplate, by: User) -> None:
    with transaction.atomic():
        audit.record(
            "alert_template.deleted",
            actor=by,
            target=f"alert_template {template.pk}",
            municipality=template.municipality,
            name=template.name,
        )
        template.delete()


# --- the common ones, for the demo and new installations ------------------------------------

# name, subject, body, urgent, request_confirmation, answers
COMMON: tuple[tuple[str, str, str, bool, bool, list[str]], ...] = (
    (
        "不審者情報",
        "【不審者情報】{どこで}での不審者の目撃について",
        "保護者の皆様\n\n{いつ}ごろ、{どこで}において、{何が}という情報が寄せられました。\n"
        "警察に通報し、パトロールを依頼しています。\n\n{保護者へのお願い}\n",
        True,
        True,
        [],
    ),
    (
        "休校",
        "【休校】{いつ}は休校とします",
        "保護者の皆様\n\n{何が}のため、{いつ}は休校とします。\n\n{保護者へのお願い}\n",
        True,
        True,
        [],
    ),
    (
        "下校時刻変更",
        "【下校時刻変更】{いつ}の下校時刻を変更します",
        "保護者の皆様\n\n{何が}のため、{いつ}の下校時刻を変更します。\n"
        "下校の場所：{どこで}\n\n{保護者へのお願い}\n",
        False,
        True,
        [],
    ),
    (
        "地震発生時の安否確認",
        "【安否確認】地震発生に伴うお子様の安否確認",
        "保護者の皆様\n\n{いつ}、{何が}。\n"
        "お子様とご家族の安否を確認しています。このメールのリンクを開き、お子様ごとに"
        "「無事です」「けがをしています」「支援が必要です」から選んで回答してください。\n\n"
        "{保護者へのお願い}\n",
        True,
        True,
        SAFETY,
    ),
)


def add_common(municipality: Municipality) -> int:
    """Give a municipality the common templates it lacks (by name); how many were added."""
    have = set(municipality.alert_templates.values_list("name", flat=True))
    added = [
        AlertTemplate(
            municipality=municipality,
            name=name,
            subject=subject,
            body=body,
            urgent=urgent,
            request_confirmation=confirm and municipality.confirmation_links_enabled,
            # Answers are given through the mail's personal link: none where a city sends none.
            answers=list(answers) if municipality.confirmation_links_enabled else [],
        )
        for name, subject, body, urgent, confirm, answers in COMMON
        if name not in have
    ]
    AlertTemplate.objects.bulk_create(added)
    return len(added)

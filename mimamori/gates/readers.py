"""Gate readers (B6): registered by staff per school, each with its own revocable token.

The token is shown once, at registration; only its SHA-256 digest is kept, so a reader is found
by an indexed lookup of the digest (a timing difference can tell nothing about a token that is
not stored). A revoked reader's token opens nothing.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from mimamori.accounts.access import in_scope
from mimamori.accounts.models import User
from mimamori.audit import log as audit
from mimamori.gates.models import TOKEN_PREFIX, GateReader, new_reader_token, reader_token_digest
from mimamori.registry.models import School


def reader_target(reader: GateReader) -> str:
    return f"gate reader {reader.pk} ({reader.name})"


def readers_for(user: User) -> QuerySet[GateReader]:
    """The readers of the schools ``user`` may reach (school staff: theirs; city: its schools)."""
    readers = GateReader.objects.select_related("school__municipality")
    return in_scope(user, readers, municipality="school__municipality__staff", school="school__staff")


def get_reader(user: User, reader_id: int) -> GateReader:
    try:
        return readers_for(user).get(pk=reader_id)
    except GateReader.DoesNotExist:
        raise Http404 from None


def register(school: School, name: str, place: str = "", *, by: User | None) -> tuple[GateReader, str]:
    """A new reader of ``school`` and its token (shown once: only the digest is kept)."""
    token, digest = new_reader_token()
    reader = GateReader(
        school=school, name=name.strip(), place=place.strip(), token_digest=digest, created_by=by
    )
    reader.full_clean()
    with transaction.atomic():
        reader.save()
        audit.record(
            "gate_reader.registered",
            actor=by,
            target=reader_target(reader),
            municipality=school.municipality_id,
            school=school.pk,
            place=reader.place,
        )
    return reader, token


def revoke(reader: GateReader, *, by: User | None) -> bool:
    """Stop ``reader``'s token from working; False if it was revoked already (nothing recorded)."""
    now = timezone.now()
    with transaction.atomic():
        if not GateReader.objects.filter(pk=reader.pk, revoked_at__isnull=True).update(revoked_at=now):
            return False
        reader.revoked_at = now
        audit.record(
            "gate_reader.revoked",
            actor=by,
            target=reader_target(reader),
            municipality=reader.school.municipality_id,
            school=reader.school_id,
        )
    return True


def authenticate(token: str) -> GateReader | None:
    """The active reader ``token`` belongs to, or None."""
    token = token.strip()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    return (
        GateReader.objects.select_related("school__municipality")
        .filter(token_digest=reader_token_digest(token), revoked_at__isnull=True)
        .first()
    )


def posted(reader: GateReader, now: object = None) -> None:
    """Remember when ``reader`` last posted (shown to staff: a silent reader may be offline)."""
    moment = now or timezone.now()
    GateReader.objects.filter(pk=reader.pk).update(last_posted_at=moment)

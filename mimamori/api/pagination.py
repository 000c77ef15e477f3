"""Pages of lists: limit and offset within what the database can take (issue 13)."""

from __future__ import annotations

from ninja import Field, Schema
from ninja.pagination import LimitOffsetPagination

from mimamori.text import MAX_BIGINT

MAX_LIMIT = 1000


class Pages(LimitOffsetPagination):
    """ninja's limit/offset pages, with ranges: a limit of 1..1000 (100 unless given) and an
    offset below 2^63, so that an absurd value is a 422 rather than a database error."""

    class Input(Schema):
        limit: int = Field(100, ge=1, le=MAX_LIMIT, description="At most this many items (1-1000).")
        offset: int = Field(0, ge=0, le=MAX_BIGINT, description="Skip this many items first.")

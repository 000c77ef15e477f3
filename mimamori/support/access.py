"""Which support-desk inquiries a signed-in user may reach (P9); outside their scope an inquiry
is missing (404), not forbidden (see accounts/access.py)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from mimamori.accounts.access import in_scope
from mimamori.accounts.models import User
from mimamori.support.models import Inquiry


def inquiries_for(user: User) -> QuerySet[Inquiry]:
    """Centre all, municipality staff their municipality's.

    School staff see only inquiries sent by logged-in guardians of their own school: an
    anonymous inquiry names only a municipality, and is the municipality's desk's to answer.
    """
    inquiries = Inquiry.objects.select_related("municipality", "registrant__school", "answered_by")
    return in_scope(user, inquiries, municipality="municipality__staff", school="registrant__school__staff")


def get_inquiry(user: User, inquiry_id: int) -> Inquiry:
    try:
        return inquiries_for(user).get(pk=inquiry_id)
    except Inquiry.DoesNotExist:
        raise Http404 from None

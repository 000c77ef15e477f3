"""The municipality's name and emblem in the portal's and the console's headers.

``{% staff_municipality user as m %}``: the city of a municipality or school staff member
(None for the centre). ``{% emblem_of m as emblem %}``: its emblem's URL, width and height, or
None when it has none (one small query; the image itself is not loaded).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from mimamori.registry import access, emblems
from mimamori.registry.models import Municipality

register = template.Library()


@register.simple_tag
def staff_municipality(user: Any) -> Municipality | None:
    if user is None:
        return None
    return access.staff_municipality(user)


@register.simple_tag
def emblem_of(municipality: Municipality | None) -> dict[str, Any] | None:
    if not isinstance(municipality, Municipality):
        return None
    found = emblems.emblem_digest(municipality.pk)
    if found is None:
        return None
    digest, width, height = found
    return {
        "url": reverse("emblem", kwargs={"code": municipality.code, "digest": digest}),
        "width": width,
        "height": height,
    }

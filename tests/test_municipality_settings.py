"""Municipality settings (S12): centre staff change them, every change is audited."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry.demo import MUNICIPALITIES, load_demo
from mimamori.registry.models import Municipality
from tests.cast import make_municipality, make_school, make_staff

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def form_data(city: Municipality, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "mail_domain": city.mail_domain,
        "support_name": city.support_name,
        "support_phone": city.support_phone,
        "support_email": city.support_email,
        "support_hours": city.support_hours,
        "broadcast_slots": [str(s) for s in city.broadcast_slots],
        "maintenance_notice_lead_hours": city.maintenance_notice_lead_hours,
        "reach_test_interval_days": city.reach_test_interval_days,
    }
    if city.confirmation_links_enabled:
        data["confirmation_links_enabled"] = "on"
    if city.one_click_unsubscribe:
        data["one_click_unsubscribe"] = "on"
    data.update(changes)
    return data


def edit(user: User, city: Municipality, **changes: Any) -> Any:
    url = reverse("console:municipality_settings", args=[city.code])
    return signed_in(user).post(url, form_data(city, **changes))


def test_the_centre_changes_settings_and_each_change_is_audited() -> None:
    city = make_municipality(broadcast_slots=[1, 2], maintenance_notice_lead_hours=72)
    centre = make_staff(Role.CENTRE)
    page = signed_in(centre).get(reverse("console:municipality_settings", args=[city.code])).content.decode()
    assert "一斉配信を受信するアドレス" in page

    response = edit(centre, city, broadcast_slots=["1", "2", "3"], support_phone="0120-111-222")
    assert response.status_code == 302
    city.refresh_from_db()
    assert city.broadcast_slots == [1, 2, 3]
    assert city.support_phone == "0120-111-222"
    first = AuditEvent.objects.get(action="municipality.settings_changed")
    assert first.actor == centre
    assert first.municipality_id == city.pk
    assert first.details["changes"] == {
        "broadcast_slots": [[1, 2], [1, 2, 3]],
        "support_phone": ["0120-000-000", "0120-111-222"],
    }

    data = form_data(city, maintenance_notice_lead_hours=24)
    data.pop("confirmation_links_enabled")  # an unticked box is not posted
    signed_in(centre).post(reverse("console:municipality_settings", args=[city.code]), data)
    city.refresh_from_db()
    assert city.confirmation_links_enabled is False
    assert city.maintenance_notice_lead_hours == 24
    assert edit(centre, city).status_code == 302  # the same values again: nothing to record
    events = AuditEvent.objects.filter(action="municipality.settings_changed").order_by("pk")
    assert events.count() == 2
    assert events.last().details["changes"] == {  # type: ignore[union-attr]
        "confirmation_links_enabled": [True, False],
        "maintenance_notice_lead_hours": [72, 24],
    }


def test_at_least_one_slot_and_a_valid_domain_are_required() -> None:
    city = make_municipality()
    centre = make_staff(Role.CENTRE)
    response = edit(centre, city, broadcast_slots=[])
    assert response.status_code == 400
    response = edit(centre, city, mail_domain="not a domain")
    assert response.status_code == 400
    city.refresh_from_db()
    assert city.broadcast_slots == [1, 2]
    assert not AuditEvent.objects.filter(action="municipality.settings_changed").exists()


@pytest.mark.parametrize("role", [Role.MUNICIPALITY, Role.SCHOOL])
def test_only_the_centre_edits_settings(role: Role) -> None:
    city = make_municipality()
    staff = (
        make_staff(role, municipality=city)
        if role == Role.MUNICIPALITY
        else make_staff(role, school=make_school(city))
    )
    url = reverse("console:municipality_settings", args=[city.code])
    assert signed_in(staff).get(url).status_code == 404
    assert edit(staff, city, support_phone="0120-999-999").status_code == 404
    city.refresh_from_db()
    assert city.support_phone == "0120-000-000"
    listing = signed_in(staff).get(reverse("console:municipalities")).content.decode()
    assert city.mail_domain in listing
    assert f'href="{url}"' not in listing  # (its DNS records page lies below that address)
    assert "サポートセンターだけ" in listing


def test_the_demo_municipalities_differ_visibly() -> None:
    load_demo()
    cities = Municipality.objects.filter(code__in=[m[0] for m in MUNICIPALITIES])
    settings = {
        (
            tuple(c.broadcast_slots),
            c.confirmation_links_enabled,
            c.maintenance_notice_lead_hours,
            c.support_hours,
        )
        for c in cities
    }
    assert len(settings) == 3
    page = (
        signed_in(User.objects.get(username="centre")).get(reverse("console:municipalities")).content.decode()
    )
    assert "1, 2, 3, 4" in page
    assert "96 時間前" in page

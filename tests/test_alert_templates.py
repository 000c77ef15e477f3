"""Alert templates (P6): per municipality, edited by its staff and the centre (audited), used by
school staff through a fill-in form that leads to compose; the demo's common ones; the API."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry import alert_templates
from mimamori.registry.demo import load_demo
from mimamori.registry.models import AlertTemplate, Municipality
from tests.cast import make_municipality, make_school, make_staff
from tests.test_api import Api

pytestmark = pytest.mark.django_db

COMMON = {"不審者情報", "休校", "下校時刻変更", "地震発生時の安否確認"}


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def cities() -> tuple[Municipality, Municipality]:
    city, other = make_municipality("minato"), make_municipality("chuo")
    alert_templates.add_common(city)
    alert_templates.add_common(other)
    return city, other


def test_a_municipality_added_through_the_api_starts_with_the_common_templates() -> None:
    centre = Api(make_staff(Role.CENTRE))
    made = centre.post(
        "/municipalities", {"code": "chuo", "name": "中央市", "mail_domain": "mail.chuo.example.jp"}
    )
    assert made.status_code == 201, made.content
    chuo = Municipality.objects.get(code="chuo")
    assert set(chuo.alert_templates.values_list("name", flat=True)) == COMMON
    # Confirmation links are on by default, so the 安否確認 template asks for confirmation.
    assert chuo.alert_templates.get(name="地震発生時の安否確認").request_confirmation


def test_the_demo_ships_the_common_templates_for_each_city() -> None:
    load_demo()
    for city in Municipality.objects.all():
        assert set(city.alert_templates.values_list("name", flat=True)) == COMMON, city.code
    suspicious = AlertTemplate.objects.filter(name="不審者情報").first()
    assert suspicious is not None
    assert suspicious.urgent
    assert [f.placeholder for f in alert_templates.fields_of(suspicious)] == [
        "いつ",
        "どこで",
        "何が",
        "保護者へのお願い",
    ]


def test_school_staff_fill_in_a_template_and_go_on_to_compose(
    cities: tuple[Municipality, Municipality],
) -> None:
    city, other = cities
    staff = make_staff(Role.SCHOOL, school=make_school(city))
    client = signed_in(staff)
    listing = client.get(reverse("console:alert_templates")).content.decode()
    mine = AlertTemplate.objects.get(municipality=city, name="不審者情報")
    theirs = AlertTemplate.objects.get(municipality=other, name="不審者情報")
    assert reverse("console:alert_template_use", args=[mine.pk]) in listing
    assert reverse("console:alert_template_use", args=[theirs.pk]) not in listing
    edit = reverse("console:alert_template_edit", args=[mine.pk])
    assert f'href="{edit}"' not in listing  # school staff do not edit
    assert client.get(reverse("console:alert_template_use", args=[theirs.pk])).status_code == 404

    url = reverse("console:alert_template_use", args=[mine.pk])
    assert client.get(url).status_code == 200
    # A field left empty: the form again, nowhere else.
    assert client.get(url, {"go": "1", "いつ": "", "when": ""}).status_code == 200
    response = client.get(
        url,
        {
            "go": "1",
            "when": "6月3日 15時",
            "where": "緑公園",
            "what": "声をかける男性がいた",
            "request": "お子様と通学路を確認してください。",
        },
    )
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert location.path == reverse("console:broadcast_new")
    query = parse_qs(location.query)
    assert query["subject"] == ["【不審者情報】緑公園での不審者の目撃について"]
    body = query["body"][0]
    assert "6月3日 15時ごろ、緑公園において、声をかける男性がいた" in body
    assert "お子様と通学路を確認してください。" in body
    assert "{" not in body
    assert query["urgent"] == ["1"]
    assert query["request_confirmation"] == ["1"]


def test_municipality_staff_edit_their_citys_templates_audited(
    cities: tuple[Municipality, Municipality],
) -> None:
    city, other = cities
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    client = signed_in(staff)
    response = client.post(
        reverse("console:alert_template_new"),
        {
            "municipality": city.pk,
            "name": "プール中止",
            "subject": "【お知らせ】{いつ}のプールは中止",
            "body": "{何が}のため中止します。",
        },
    )
    assert response.status_code == 302, response.content.decode()
    created = AlertTemplate.objects.get(municipality=city, name="プール中止")

    # Another city cannot be chosen, nor its templates opened.
    response = client.post(
        reverse("console:alert_template_new"),
        {"municipality": other.pk, "name": "x", "subject": "x", "body": "x"},
    )
    assert response.status_code == 200
    assert not AlertTemplate.objects.filter(name="x").exists()
    theirs = AlertTemplate.objects.filter(municipality=other).first()
    assert theirs is not None
    assert client.get(reverse("console:alert_template_edit", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("console:alert_template_delete", args=[theirs.pk])).status_code == 404

    # An unknown field in braces is refused with the known ones named.
    response = client.post(
        reverse("console:alert_template_edit", args=[created.pk]),
        {"municipality": city.pk, "name": "プール中止", "subject": "{だれが}", "body": "本文"},
    )
    assert response.status_code == 200
    assert "{だれが}" in response.content.decode()
    response = client.post(
        reverse("console:alert_template_edit", args=[created.pk]),
        {"municipality": city.pk, "name": "プール中止", "subject": "【中止】{いつ}のプール", "body": "本文"},
    )
    assert response.status_code == 302
    created.refresh_from_db()
    assert created.subject == "【中止】{いつ}のプール"
    assert client.post(reverse("console:alert_template_delete", args=[created.pk])).status_code == 302
    assert not AlertTemplate.objects.filter(pk=created.pk).exists()
    actions = list(
        AuditEvent.objects.filter(target=f"alert_template {created.pk}")
        .order_by("pk")
        .values_list("action", "actor")
    )
    assert actions == [
        ("alert_template.created", staff.pk),
        ("alert_template.changed", staff.pk),
        ("alert_template.deleted", staff.pk),
    ]
    assert all(
        e.municipality_id == city.pk for e in AuditEvent.objects.filter(action__startswith="alert_template")
    )


def test_school_staff_cannot_edit_and_the_centre_edits_any(cities: tuple[Municipality, Municipality]) -> None:
    city, other = cities
    school_staff = signed_in(make_staff(Role.SCHOOL, school=make_school(city)))
    mine = AlertTemplate.objects.filter(municipality=city).first()
    assert mine is not None
    assert school_staff.get(reverse("console:alert_template_new")).status_code == 404
    assert school_staff.get(reverse("console:alert_template_edit", args=[mine.pk])).status_code == 404
    assert school_staff.post(reverse("console:alert_template_delete", args=[mine.pk])).status_code == 404
    assert AlertTemplate.objects.filter(pk=mine.pk).exists()

    centre = signed_in(make_staff(Role.CENTRE))
    listing = centre.get(reverse("console:alert_templates")).content.decode()
    for template in AlertTemplate.objects.all():
        assert f'href="{reverse("console:alert_template_edit", args=[template.pk])}"' in listing
    response = centre.post(
        reverse("console:alert_template_new"),
        {
            "municipality": other.pk,
            "name": "給食",
            "subject": "給食について",
            "body": "{何が}",
            "urgent": "on",
        },
    )
    assert response.status_code == 302
    assert AlertTemplate.objects.get(municipality=other, name="給食").urgent


def test_api_lists_the_templates_in_the_tokens_scope(cities: tuple[Municipality, Municipality]) -> None:
    city, _other = cities
    school_api = Api(make_staff(Role.SCHOOL, school=make_school(city)))
    response = school_api.get("/templates")
    assert response.status_code == 200
    items = response.json()["items"]
    assert {item["name"] for item in items} == COMMON
    assert {item["municipality"] for item in items} == {"minato"}
    closing = next(item for item in items if item["name"] == "休校")
    assert [f["name"] for f in closing["fields"]] == ["いつ", "何が", "保護者へのお願い"]
    assert closing["answers"] == []
    assert set(closing) >= {"id", "name", "subject", "body", "fields", "answers"}
    centre = Api(make_staff(Role.CENTRE)).get("/templates").json()
    assert centre["count"] == 8

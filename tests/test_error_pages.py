"""Issue 14: the error pages (400, 403, 404, 500) in Japanese in each site's style, English in
the English UI, JSON for the API; a lost database is still the 503 page."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import Client, RequestFactory
from django.urls import reverse

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.core import middleware
from tests.cast import make_school, make_staff

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"
CONSOLE_BRAND = "見守りメール 管理画面"
PORTAL_BRAND = "児童見守りシステム専用サイト"


def _staff_client() -> tuple[Client, object]:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    client = Client()
    client.force_login(staff, backend=BACKEND)
    return client, staff


def test_a_console_404_is_japanese_in_the_console_style_with_its_menu() -> None:
    client, _ = _staff_client()
    response = client.get("/console/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "ページが見つかりません" in page
    assert CONSOLE_BRAND in page
    assert reverse("console:broadcasts") in page  # the console's menu, as on every page
    assert "Not Found" not in page


def test_another_schools_broadcast_is_the_console_404() -> None:
    client, _ = _staff_client()
    other = make_school()
    other_staff = make_staff(Role.SCHOOL, school=other)
    broadcast = sending.compose(other_staff, subject="s", body="b", scope=resolve_scope(other_staff))
    response = client.get(reverse("console:broadcast", args=[broadcast.pk]))
    assert response.status_code == 404
    assert "ページが見つかりません" in response.content.decode()
    assert CONSOLE_BRAND in response.content.decode()


def test_a_portal_404_is_japanese_in_the_guardian_site_style() -> None:
    response = Client().get("/portal/no-such-page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert "ページが見つかりません" in page
    assert PORTAL_BRAND in page
    assert "よくある質問" in page
    assert "Not Found" not in page


def test_the_english_ui_gets_the_error_page_in_english() -> None:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get("/portal/no-such-page/").content.decode()
    assert "Page not found" in page
    assert "ページが見つかりません" not in page


def test_a_refused_form_is_the_sites_japanese_403() -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(reverse("portal:login"), {"username": "x", "password": "y"})
    page = response.content.decode()
    assert response.status_code == 403
    assert "このページは開けません" in page
    assert PORTAL_BRAND in page
    assert "CSRF" not in page


def test_the_api_answers_json_for_an_unknown_path() -> None:
    response = Client().get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(("path", "brand"), [("/console/x/", CONSOLE_BRAND), ("/portal/x/", PORTAL_BRAND)])
def test_a_server_error_is_each_sites_japanese_500_and_a_lost_database_still_the_503(
    path: str, brand: str
) -> None:
    request = RequestFactory().get(path)
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = middleware.server_error(request)
    page = response.content.decode()
    assert response.status_code == 500
    assert "エラーが発生しました" in page
    assert brand in page
    assert "Server Error" not in page

    try:
        raise OperationalError("the database is away")
    except OperationalError:
        response = middleware.server_error(request)
    assert response.status_code == 503
    assert response["Retry-After"]

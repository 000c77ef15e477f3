"""The staff console: login for staff only, each role sees exactly its scope, the dev mailbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries, Settings

from mimamori.accounts.models import Role, User
from mimamori.mail.devmailbox import start_server
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Municipality, Registrant, RegistrantStatus, School
from tests.cast import PASSWORD, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import free_port
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


class Cast:
    """Two cities; city A has schools A1 and A2, city B has school B1; one child each."""

    def __init__(self) -> None:
        self.city_a: Municipality = make_municipality(name="岩見沢市")
        self.city_b: Municipality = make_municipality(name="滝川市")
        self.school_a1: School = make_school(self.city_a, name="東小学校")
        self.school_a2: School = make_school(self.city_a, name="西小学校")
        self.school_b1: School = make_school(self.city_b, name="北小学校")
        self.child_a1: Registrant = make_registrant(self.school_a1, ["a1@docomo.ne.jp"], password=None)
        self.child_a2: Registrant = make_registrant(self.school_a2, ["a2@docomo.ne.jp"], password=None)
        self.child_b1: Registrant = make_registrant(self.school_b1, ["b1@docomo.ne.jp"], password=None)
        self.centre = make_staff(Role.CENTRE)
        self.city_a_staff = make_staff(Role.MUNICIPALITY, municipality=self.city_a)
        self.school_a1_staff = make_staff(Role.SCHOOL, school=self.school_a1)


@pytest.fixture
def cast() -> Cast:
    return Cast()


def names_on(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


# --- login -----------------------------------------------------------------------------


def test_staff_log_in_and_land_on_the_console_home(cast: Cast) -> None:
    client = Client()
    response = client.post(
        reverse("console:login"), {"username": cast.city_a_staff.username, "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("console:home")
    page = names_on(client, reverse("console:home"))
    assert "自治体: 岩見沢市" in page
    assert "ログアウト" in page


def test_a_guardian_is_refused_at_the_staff_login_with_the_generic_error() -> None:
    guardian = make_registrant(None, ["mama@docomo.ne.jp"]).account
    client = Client()
    response = client.post(reverse("console:login"), {"username": guardian.username, "password": PASSWORD})
    assert response.status_code == 200
    assert "ログインIDまたはパスワードが正しくありません" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get(reverse("console:home")).status_code == 302


def test_a_wrong_password_gets_the_same_error(cast: Cast) -> None:
    response = Client().post(
        reverse("console:login"), {"username": cast.centre.username, "password": "wrong-password"}
    )
    assert "ログインIDまたはパスワードが正しくありません" in response.content.decode()


def test_repeated_wrong_passwords_lock_the_staff_login(cast: Cast, settings: Settings) -> None:
    client = Client()
    url = reverse("console:login")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(url, {"username": cast.centre.username, "password": "wrong-password"})
    response = client.post(url, {"username": cast.centre.username, "password": PASSWORD})
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_ends_the_session(cast: Cast) -> None:
    client = signed_in(cast.centre)
    assert client.get(reverse("console:logout")).status_code == 405
    assert client.post(reverse("console:logout")).status_code == 302
    assert client.get(reverse("console:home")).status_code == 302


def test_signed_out_visitors_and_guardians_are_sent_to_the_login(cast: Cast) -> None:
    guardian = make_registrant(cast.school_a1).account
    for client in (Client(), signed_in(guardian)):
        response = client.get(reverse("console:registrants"))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("console:login"))


# --- scope -----------------------------------------------------------------------------


def test_home_names_each_role_and_counts_its_scope(cast: Cast) -> None:
    gone = make_registrant(cast.school_a1, password=None)
    gone.status = RegistrantStatus.DEREGISTERED
    gone.save()
    home = reverse("console:home")
    school_home = signed_in(cast.school_a1_staff).get(home)
    assert "学校: 岩見沢市 東小学校" in school_home.content.decode()
    assert (school_home.context["school_count"], school_home.context["registrant_count"]) == (1, 1)
    city_home = signed_in(cast.city_a_staff).get(home)
    assert (city_home.context["school_count"], city_home.context["registrant_count"]) == (2, 2)
    centre_home = signed_in(cast.centre).get(home)
    assert "センター" in centre_home.content.decode()
    assert centre_home.context["school_count"] == 3


def test_school_staff_see_their_registrants_and_not_another_schools(cast: Cast) -> None:
    page = names_on(signed_in(cast.school_a1_staff), reverse("console:registrants"))
    assert cast.child_a1.child_name in page
    assert cast.child_a2.child_name not in page
    assert cast.child_b1.child_name not in page


def test_municipality_staff_see_only_their_citys_schools(cast: Cast) -> None:
    client = signed_in(cast.city_a_staff)
    page = names_on(client, reverse("console:schools"))
    assert "東小学校" in page
    assert "西小学校" in page
    assert "北小学校" not in page
    registrants = names_on(client, reverse("console:registrants"))
    assert cast.child_a2.child_name in registrants
    assert cast.child_b1.child_name not in registrants


def test_the_centre_sees_every_school(cast: Cast) -> None:
    page = names_on(signed_in(cast.centre), reverse("console:schools"))
    for name in ("東小学校", "西小学校", "北小学校"):
        assert name in page


@pytest.mark.parametrize(
    ("who", "target", "status"),
    [
        ("school_a1_staff", "child_a1", 200),
        ("school_a1_staff", "child_a2", 404),
        ("city_a_staff", "child_a2", 200),
        ("city_a_staff", "child_b1", 404),
        ("centre", "child_b1", 200),
    ],
)
def test_a_registrant_outside_scope_is_missing(cast: Cast, who: str, target: str, status: int) -> None:
    registrant: Registrant = getattr(cast, target)
    response = signed_in(getattr(cast, who)).get(reverse("console:registrant", args=[registrant.pk]))
    assert response.status_code == status


def test_a_school_outside_scope_is_missing(cast: Cast) -> None:
    client = signed_in(cast.school_a1_staff)
    assert client.get(reverse("console:school", args=[cast.school_a2.pk])).status_code == 404
    page = names_on(client, reverse("console:school", args=[cast.school_a1.pk]))
    assert cast.school_a1.sender_address in page


def test_the_school_filter_offers_only_schools_in_scope(cast: Cast) -> None:
    client = signed_in(cast.school_a1_staff)
    response = client.get(reverse("console:registrants"), {"school": cast.school_b1.pk})
    page = response.content.decode()
    assert "北小学校" not in page
    assert cast.child_b1.child_name not in page


def test_the_registrant_page_shows_slots_and_which_receive_broadcasts(cast: Cast) -> None:
    child = make_registrant(
        cast.school_a1, ["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "grandma@gmail.com"], password=None
    )
    page = names_on(signed_in(cast.school_a1_staff), reverse("console:registrant", args=[child.pk]))
    assert child.login_id in page
    assert child.child_name_kana in page
    assert "grandma@gmail.com" in page
    # Slots 1 and 2 receive broadcasts by default; slot 3 only gets the registration mail.
    rows = page.split("アドレス3")[1]
    assert "受信しない" in rows.split("</tr>")[0]
    assert "未完了" in page  # password=None: the guardian has not used the registration code


# --- search, filters, paging, query counts -------------------------------------------------


def test_registrants_are_found_by_name_kana_login_id_and_address(cast: Cast) -> None:
    client = signed_in(cast.centre)
    url = reverse("console:registrants")
    child = cast.child_a2
    for text in (child.child_name, child.child_name_kana, child.login_id, "A2@DOCOMO"):
        page = names_on(client, f"{url}?q={text}")
        assert child.child_name in page, text
        assert cast.child_a1.child_name not in page, text


def test_registrant_filters(cast: Cast) -> None:
    other = make_registrant(cast.school_a1, grade=5, class_name="2", password=None)
    other.status = RegistrantStatus.DEREGISTERED
    other.save()
    client = signed_in(cast.city_a_staff)
    url = reverse("console:registrants")
    assert other.child_name in names_on(client, f"{url}?grade=5&class_name=2")
    assert cast.child_a1.child_name not in names_on(client, f"{url}?grade=5")
    page = names_on(client, f"{url}?status=active&school={cast.school_a1.pk}")
    assert cast.child_a1.child_name in page
    assert other.child_name not in page
    assert cast.child_a2.child_name not in page


def test_schools_search_by_name(cast: Cast) -> None:
    page = names_on(signed_in(cast.centre), reverse("console:schools") + "?q=西")
    assert "西小学校" in page
    assert "東小学校" not in page


def test_registrants_come_in_pages_of_fifty_and_keep_the_filters(cast: Cast) -> None:
    for _ in range(52):
        make_registrant(cast.school_a2, password=None, grade=6)
    client = signed_in(cast.centre)
    url = reverse("console:registrants")
    first = client.get(url, {"grade": 6})
    assert len(first.context["page"].object_list) == 50
    assert "grade=6&amp;page=2" in first.content.decode()
    second = client.get(url, {"grade": 6, "page": 2})
    assert len(second.context["page"].object_list) == 2
    assert {r.pk for r in first.context["page"]}.isdisjoint({r.pk for r in second.context["page"]})


def test_list_pages_take_a_fixed_number_of_queries(
    cast: Cast, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    for n in range(30):
        school = make_school(cast.city_a)
        make_registrant(school, [f"m{n}@docomo.ne.jp", f"p{n}@ezweb.ne.jp"], password=None)
    client = signed_in(cast.centre)
    # Session, user, count, page and the school filter's options: none of them per row.
    with django_assert_max_num_queries(6):
        response = client.get(reverse("console:registrants"))
    assert len(response.context["page"].object_list) == 33
    with django_assert_max_num_queries(5):
        response = client.get(reverse("console:schools"))
    assert len(response.context["page"].object_list) == 33
    counts = {s.pk: s.registrant_count for s in response.context["page"]}
    assert counts[cast.school_a1.pk] == 1


# --- the development mailbox -----------------------------------------------------------


@pytest.fixture
def devmailbox(settings: Settings, tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "mailbox"
    port = free_port()
    controller = start_server(directory, port=port)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.DEVMAIL_DIR = directory
    settings.DEVMAIL_ENABLED = True
    try:
        yield directory
    finally:
        controller.stop()


# The worker calls close_old_connections(), which closes a connection that is inside a test's
# wrapping transaction; on PostgreSQL that would break the test, so these tests commit for real.
@pytest.mark.django_db(transaction=True)
def test_a_mail_really_sent_over_smtp_shows_in_the_mailbox(cast: Cast, devmailbox: Path) -> None:
    set_addresses(cast.child_a1, ["a1@docomo.ne.jp", "papa@ezweb.ne.jp"])
    run_queued_tasks()
    client = signed_in(cast.school_a1_staff)
    listing = names_on(client, reverse("console:mailbox"))
    assert "papa@ezweb.ne.jp" in listing
    assert "登録完了" in listing
    key = client.get(reverse("console:mailbox")).context["mails"][0].key
    message = names_on(client, reverse("console:mailbox_message", args=[key]))
    assert cast.child_a1.child_name in message  # the base64 body, decoded


@pytest.mark.django_db(transaction=True)
def test_school_staff_read_only_their_own_schools_mail(cast: Cast, devmailbox: Path) -> None:
    set_addresses(cast.child_a2, ["a2@docomo.ne.jp", "west@ezweb.ne.jp"])
    run_queued_tasks()
    own_school = signed_in(cast.school_a1_staff)
    assert "west@ezweb.ne.jp" not in names_on(own_school, reverse("console:mailbox"))
    key = signed_in(cast.centre).get(reverse("console:mailbox")).context["mails"][0].key
    assert own_school.get(reverse("console:mailbox_message", args=[key])).status_code == 404
    city = signed_in(cast.city_a_staff)
    assert "west@ezweb.ne.jp" in names_on(city, reverse("console:mailbox"))
    assert city.get(reverse("console:mailbox_message", args=[key])).status_code == 200


@pytest.mark.parametrize("key", ["..", "..%2F..%2Fetc%2Fpasswd", "1732850000.M1P2Q3.host%2F..", "cur", "x"])
def test_mailbox_keys_that_are_not_maildir_keys_are_missing(cast: Cast, devmailbox: Path, key: str) -> None:
    response = signed_in(cast.centre).get(f"/console/mailbox/{key}/")
    assert response.status_code == 404


def test_the_mailbox_is_missing_when_a_real_mail_server_is_configured(
    cast: Cast, devmailbox: Path, settings: Settings
) -> None:
    settings.DEVMAIL_ENABLED = False
    client = signed_in(cast.centre)
    assert client.get(reverse("console:mailbox")).status_code == 404
    assert client.get(reverse("console:mailbox_message", args=["1732850000.M1P2Q3.host"])).status_code == 404
    assert "メールボックス" not in names_on(client, reverse("console:home"))


def test_the_mailbox_shows_a_long_japanese_sender_name_as_written() -> None:
    from mimamori.mail import devmailbox
    from mimamori.mail.messages import encoded_words

    # The display name is split into two encoded words over two lines, as mimamori writes it.
    name = "岩見沢市 地震安否確認（自動）"
    written = "\r\n ".join(encoded_words(name, "utf-8", len("From: ")))
    raw = f"From: {written} <quake@mail.example.jp>\r\nSubject: x\r\n\r\nb\r\n".encode()
    assert devmailbox._sender(raw) == f"{name} <quake@mail.example.jp>"

"""S6, the guardian site: login and lockout, first login, addresses, オプション, isolation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from mimamori.portal import urls as portal_urls
from mimamori.registry.models import Registrant, RegistrantStatus
from mimamori.registry.registrants import deregister, enrol
from tests.cast import PASSWORD, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

GENERIC_LOGIN_ERROR = "ログインIDまたはパスワードが正しくありません"
LOCKED = "ログインが一時停止されています"
LOCKED_STATUS = 429  # django-axes' AXES_HTTP_RESPONSE_CODE default: Too Many Requests
NEW_PASSWORD = "a-new-Passw0rd"
GUARDIAN_PAGES = ["portal:home", "portal:addresses", "portal:options", "portal:history"]


def log_in(client: Client, login_id: str, password: str = PASSWORD) -> Any:
    return client.post(reverse("portal:login"), {"username": login_id, "password": password})


def is_logged_in(client: Client) -> bool:
    return client.get(reverse("portal:home")).status_code == 200


def guardian_client(registrant: Registrant) -> Client:
    client = Client()
    client.force_login(registrant.account)
    return client


def text(response: Any) -> str:
    return response.content.decode()


# Logging in


def test_a_guardian_logs_in_and_sees_the_change_menu_for_their_child() -> None:
    registrant = make_registrant(child_name="見守 花子")
    client = Client()
    response = log_in(client, registrant.login_id)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:home")
    page = text(client.get(reverse("portal:home")))
    assert "変更メニュー" in page
    assert "メールアドレスの変更" in page
    assert "オプション" in page
    assert "ログアウト" in page
    assert "見守 花子" in page
    assert registrant.school.name in page


def test_a_wrong_password_shows_a_japanese_error_and_does_not_log_in() -> None:
    registrant = make_registrant()
    client = Client()
    response = log_in(client, registrant.login_id, "wrong-password-1")
    assert response.status_code == 200
    assert GENERIC_LOGIN_ERROR in text(response)
    assert not is_logged_in(client)


def test_five_wrong_passwords_lock_the_login_id_even_for_the_right_password() -> None:
    registrant = make_registrant()
    client = Client()
    for _ in range(4):
        assert log_in(client, registrant.login_id, "wrong-password-1").status_code == 200
    fifth = log_in(client, registrant.login_id, "wrong-password-1")
    assert fifth.status_code == LOCKED_STATUS
    right = log_in(Client(), registrant.login_id, PASSWORD)
    assert right.status_code == LOCKED_STATUS
    assert LOCKED in text(right)
    assert "しばらくしてから再度お試しください" in text(right)
    assert not is_logged_in(client)


def test_a_lockout_is_per_login_id() -> None:
    locked, other = make_registrant(), make_registrant()
    for _ in range(5):
        log_in(Client(), locked.login_id, "wrong-password-1")
    client = Client()
    assert log_in(client, other.login_id).status_code == 302
    assert is_logged_in(client)


def test_staff_cannot_log_in_at_the_portal() -> None:
    school = make_school()
    staff = make_staff("school", school=school)
    client = Client()
    response = log_in(client, staff.username)
    assert response.status_code == 200
    assert GENERIC_LOGIN_ERROR in text(response)
    assert "_auth_user_id" not in client.session


def test_a_logged_in_staff_member_gets_no_guardian_page() -> None:
    client = Client()
    client.force_login(make_staff("centre"))
    for name in GUARDIAN_PAGES:
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("portal:login"))


def test_a_deregistered_registrant_cannot_log_in() -> None:
    registrant = make_registrant()
    Registrant.objects.filter(pk=registrant.pk).update(status=RegistrantStatus.DEREGISTERED)
    client = Client()
    response = log_in(client, registrant.login_id)
    assert "登録は解除されている" in text(response)
    assert "_auth_user_id" not in client.session


def test_a_registrant_deregistered_through_the_verb_cannot_log_in_or_stay_logged_in() -> None:
    registrant = make_registrant()
    client = guardian_client(registrant)
    deregister(registrant)
    assert client.get(reverse("portal:home")).status_code == 302
    fresh = Client()
    assert GENERIC_LOGIN_ERROR in text(log_in(fresh, registrant.login_id))
    assert "_auth_user_id" not in fresh.session


def test_logout_needs_post() -> None:
    client = guardian_client(make_registrant())
    assert client.get(reverse("portal:logout")).status_code == 405
    assert is_logged_in(client)
    response = client.post(reverse("portal:logout"), follow=True)
    assert "ログアウトしました" in text(response)
    assert not is_logged_in(client)


@pytest.mark.parametrize("name", GUARDIAN_PAGES)
def test_anonymous_users_are_sent_to_login(name: str) -> None:
    response = Client().get(reverse(name))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('portal:login')}?next={reverse(name)}"


def test_login_returns_to_the_page_asked_for() -> None:
    registrant = make_registrant()
    client = Client()
    asked = client.get(reverse("portal:options"))["Location"]
    response = client.post(
        asked, {"username": registrant.login_id, "password": PASSWORD, "next": reverse("portal:options")}
    )
    assert response["Location"] == reverse("portal:options")


def test_an_anonymous_post_changes_nothing() -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    response = Client().post(reverse("portal:addresses"), {"address1": "evil@example.com"})
    assert response.status_code == 302
    assert registrant.addresses_by_slot()[1] == "mama@docomo.ne.jp"


# First login with the letter's registration code


def first_login(client: Client, login_id: str, code: str, password: str = NEW_PASSWORD) -> Any:
    return client.post(
        reverse("portal:first_login"),
        {"username": login_id, "code": code, "new_password1": password, "new_password2": password},
    )


def test_first_login_sets_the_password_and_the_code_cannot_be_used_again() -> None:
    enrolment = enrol(make_school(), child_name="見守 一郎", grade=2, class_name="1")
    login_id = enrolment.registrant.login_id
    client = Client()
    # The letter's code, typed in lower case without hyphens, still works.
    typed = enrolment.registration_code.replace("-", "").lower()
    response = first_login(client, login_id, typed)
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:addresses")
    assert "見守 一郎" in text(client.get(reverse("portal:addresses")))
    registrant = Registrant.objects.select_related("account").get(pk=enrolment.registrant.pk)
    assert registrant.registration_code_digest == ""
    assert registrant.account.check_password("a-new-Passw0rd")

    again = first_login(Client(), login_id, enrolment.registration_code, "another-Passw0rd")
    assert again.status_code == 200
    assert "登録コードがすでに使用されています" in text(again)
    registrant.account.refresh_from_db()
    assert registrant.account.check_password("a-new-Passw0rd")
    assert log_in(Client(), login_id, "a-new-Passw0rd").status_code == 302


def test_first_login_refuses_a_weak_or_mismatched_password_and_keeps_the_code() -> None:
    enrolment = enrol(make_school(), child_name="見守 二郎", grade=2, class_name="1")
    client = Client()
    weak = first_login(client, enrolment.registrant.login_id, enrolment.registration_code, "12345678")
    assert "このパスワードは数字しか使われていません" in text(weak)
    assert "_auth_user_id" not in client.session
    mismatched = Client().post(
        reverse("portal:first_login"),
        {
            "username": enrolment.registrant.login_id,
            "code": enrolment.registration_code,
            "new_password1": "a-new-Passw0rd",
            "new_password2": "a-new-Passw0rd-typo",
        },
    )
    assert "2つのパスワードが一致しません" in text(mismatched)
    enrolment.registrant.refresh_from_db()
    assert enrolment.registrant.has_pending_registration


def test_wrong_registration_codes_count_towards_the_lockout() -> None:
    enrolment = enrol(make_school(), child_name="見守 三郎", grade=2, class_name="1")
    login_id = enrolment.registrant.login_id
    for _ in range(4):
        response = first_login(Client(), login_id, "AAAA-BBBB-CCCC")
        assert "ログインIDまたは登録コードが正しくない" in text(response)
    assert first_login(Client(), login_id, "AAAA-BBBB-CCCC").status_code == LOCKED_STATUS
    locked = first_login(Client(), login_id, enrolment.registration_code)
    assert locked.status_code == LOCKED_STATUS
    assert LOCKED in text(locked)
    enrolment.registrant.refresh_from_db()
    assert enrolment.registrant.has_pending_registration
    assert not enrolment.registrant.account.has_usable_password()


# Addresses


# The worker closes "old" connections between tasks; inside a test's rolled-back transaction
# that would close PostgreSQL's connection, so this test commits for real.
@pytest.mark.django_db(transaction=True)
def test_changing_slot_2_sends_the_registration_complete_mail_to_slot_2_only(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "", "gran@gmail.com"])
    client = guardian_client(registrant)
    form = text(client.get(reverse("portal:addresses")))
    assert 'value="papa@ezweb.ne.jp"' in form
    response = client.post(
        reverse("portal:addresses"),
        {"address1": "mama@docomo.ne.jp", "address2": "papa.new@ezweb.ne.jp", "address4": "gran@gmail.com"},
        follow=True,
    )
    assert "アドレス2に「登録完了メール」を送信しました" in text(response)
    assert registrant.addresses_by_slot() == {
        1: "mama@docomo.ne.jp",
        2: "papa.new@ezweb.ne.jp",
        3: "",
        4: "gran@gmail.com",
    }
    run_queued_tasks()
    assert smtp_sink.copies() == {"papa.new@ezweb.ne.jp": 1}


def test_the_address_page_explains_broadcast_slots_and_the_sender_to_allow() -> None:
    municipality = make_municipality(mail_domain="mail.mimamori-iwamizawa.jp")
    registrant = make_registrant(make_school(municipality, local="midori-sho"))
    page = text(guardian_client(registrant).get(reverse("portal:addresses")))
    assert "一斉同報メールが配信されるのは、アドレス1、2に登録したメールアドレスです。" in page
    assert "アドレス3、4に登録したメールアドレスには配信されません" in page
    assert "登録完了メール" in page
    assert "midori-sho@mail.mimamori-iwamizawa.jp" in page
    assert "ドメイン指定受信" in page
    for slot in (1, 2, 3, 4):
        assert f"アドレス{slot}</label>" in page
    assert '<button type="submit">設定</button>' in page


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a..b@docomo.ne.jp", "連続"),
        ("abc.@ezweb.ne.jp", "直前"),
        ("MAMA@docomo.ne.jp", "すでにアドレス1に登録されています"),
        ("x" * 65 + "@docomo.ne.jp", "長すぎ"),
    ],
)
def test_a_refused_address_is_explained_beside_its_field_and_changes_nothing(
    value: str, message: str
) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    client = guardian_client(registrant)
    response = client.post(
        reverse("portal:addresses"),
        {"address1": "mama@docomo.ne.jp", "address2": value, "address3": "new@gmail.com"},
    )
    assert response.status_code == 200
    page = text(response)
    beside_slot_2 = page[page.index('id="id_address2"') : page.index('for="id_address3"')]
    assert message in beside_slot_2
    assert 'class="errorlist"' in beside_slot_2
    assert registrant.addresses_by_slot() == {1: "mama@docomo.ne.jp", 2: "papa@ezweb.ne.jp", 3: "", 4: ""}
    assert not DBTaskResult.objects.exists()


def test_the_duplicate_message_names_the_slot() -> None:
    registrant = make_registrant()
    client = guardian_client(registrant)
    page = text(
        client.post(reverse("portal:addresses"), {"address1": "a@gmail.com", "address3": "A@gmail.com"})
    )
    assert "アドレス1" in page[page.index('id="id_address3"') :]
    assert not DBTaskResult.objects.exists()


# オプション


def test_unticking_the_option_saves_false_and_ticking_saves_true() -> None:
    registrant = make_registrant()
    client = guardian_client(registrant)
    page = text(client.get(reverse("portal:options")))
    assert "連絡メールを受信する" in page
    assert "checked" in page
    assert '<button type="submit">設定</button>' in page
    response = client.post(reverse("portal:options"), {}, follow=True)
    assert "連絡メールを受信しません" in text(response)
    registrant.refresh_from_db()
    assert registrant.receive_broadcasts is False
    assert "checked" not in text(client.get(reverse("portal:options")))
    assert "受信しない設定" in text(client.get(reverse("portal:home")))
    client.post(reverse("portal:options"), {"receive_broadcasts": "on"})
    registrant.refresh_from_db()
    assert registrant.receive_broadcasts is True


# Isolation


def test_portal_urls_carry_no_ids() -> None:
    routes = [str(p.pattern) for p in portal_urls.urlpatterns]
    assert "addresses/" in routes
    # The one exception is a mailed password reset link's token (256 random bits, no ID).
    assert [route for route in routes if "<" in route] == ["password-reset/<str:token>/"]


def test_a_guardian_sees_only_their_own_child_and_support_desk() -> None:
    mine = make_registrant(
        make_school(make_municipality(support_phone="0126-11-1111")),
        ["mine@docomo.ne.jp"],
        child_name="自分 の子",
    )
    theirs = make_registrant(
        make_school(make_municipality(support_phone="0125-22-2222")),
        ["theirs@docomo.ne.jp"],
        child_name="よその 子",
    )
    client = guardian_client(mine)
    for name in GUARDIAN_PAGES:
        page = text(client.get(reverse(name)))
        assert "自分 の子" in page
        assert mine.school.name in page
        assert "サポート窓口" in page
        assert "0126-11-1111" in page
        assert mine.school.municipality.support_hours in page
        assert mine.school.municipality.support_email in page
        assert "よその 子" not in page
        assert theirs.school.name not in page
        assert "theirs@docomo.ne.jp" not in page
        assert "0125-22-2222" not in page
    client.post(reverse("portal:addresses"), {"address1": "changed@docomo.ne.jp"})
    assert theirs.addresses_by_slot()[1] == "theirs@docomo.ne.jp"
    assert mine.addresses_by_slot()[1] == "changed@docomo.ne.jp"


# Issue 14: what a guardian is told when no broadcast will arrive, and about full-width input


NO_BROADCAST = (
    "アドレス1、2にメールアドレスが登録されていないため、一斉同報メール（不審者情報など）は配信されません。"
)


def test_keeping_only_slot_3_is_saved_with_a_warning_not_a_green_done_and_the_menu_says_so() -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "gran@gmail.com"])
    client = guardian_client(registrant)
    assert NO_BROADCAST not in text(client.get(reverse("portal:home")))
    response = client.post(reverse("portal:addresses"), {"address3": "gran@gmail.com"}, follow=True)
    page = text(response)
    assert registrant.addresses_by_slot() == {1: "", 2: "", 3: "gran@gmail.com", 4: ""}
    assert "message success" not in page
    assert "message warning" in page
    assert "ただし、このままでは一斉同報メールは配信されません" in page
    assert NO_BROADCAST in page
    assert "アドレス3、4に登録したメールアドレスには、一斉同報サービスに係るメールは配信されません。" in page
    assert "アドレス1または2にメールアドレスを登録してください。" in page
    menu = text(client.get(reverse("portal:home")))
    assert NO_BROADCAST in menu
    # Slot 2 filled again: a plain confirmation, and the menu's warning is gone.
    response = client.post(
        reverse("portal:addresses"),
        {"address2": "papa@ezweb.ne.jp", "address3": "gran@gmail.com"},
        follow=True,
    )
    assert "message success" in text(response)
    assert NO_BROADCAST not in text(response)
    assert NO_BROADCAST not in text(client.get(reverse("portal:home")))


def test_the_warning_follows_the_municipalitys_broadcast_slots() -> None:
    municipality = make_municipality(broadcast_slots=[1])
    registrant = make_registrant(make_school(municipality), ["", "papa@ezweb.ne.jp"])
    menu = text(guardian_client(registrant).get(reverse("portal:home")))
    assert "アドレス1にメールアドレスが登録されていないため" in menu
    assert "アドレス2、3、4に登録したメールアドレスには" in menu


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mama＠docomo.ne.jp", "アドレスの「＠」が全角になっています。"),
        ("ｍａｍａ@docomo.ne.jp", "アドレスに全角の文字（ｍ、ａ）が含まれています。"),
        ("mama@docomo．ne．jp", "アドレスに全角の文字（．）が含まれています。"),
        ("mama　@docomo.ne.jp", "アドレスに全角の文字（全角スペース）が含まれています。"),
        ("ｍａｍａ＠ｄｏｃｏｍｏ．ｎｅ．ｊｐ", "アドレスの「＠」が全角になっています。"),
    ],
)
def test_full_width_input_is_named_and_shown_in_half_width(value: str, message: str) -> None:
    registrant = make_registrant()
    client = guardian_client(registrant)
    response = client.post(reverse("portal:addresses"), {"address1": value})
    assert response.status_code == 200
    page = text(response)
    beside_slot_1 = page[page.index('id="id_address1"') : page.index('for="id_address2"')]
    assert message in beside_slot_1
    assert "半角にすると「mama@docomo.ne.jp」です。" in beside_slot_1
    assert registrant.addresses_by_slot()[1] == ""
    assert not DBTaskResult.objects.exists()


@pytest.mark.parametrize("name", [*GUARDIAN_PAGES, "portal:deregistration"])
def test_the_municipalitys_name_is_in_the_header_and_the_tab_title(name: str) -> None:
    registrant = make_registrant(make_school(make_municipality(name="岩見沢市")))
    page = text(guardian_client(registrant).get(reverse(name)))
    title = page[page.index("<title>") : page.index("</title>")]
    assert title.endswith("| 岩見沢市 児童見守りシステム")
    assert "mimamori" not in title
    header = page[page.index('class="brand"') : page.index("</a>", page.index('class="brand"'))]
    assert "岩見沢市" in header
    assert "児童見守りシステム" in header


def test_the_login_page_title_names_the_system_in_japanese() -> None:
    page = text(Client().get(reverse("portal:login")))
    assert "| 児童見守りシステム</title>" in page

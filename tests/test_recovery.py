"""P11, issue 13 item 3: the way back from a forgotten password, and a lockout strangers cannot use.

Guardian reset by mail, staff unlock and reset from the console, registration letters for any
registrant, the lockout keyed per (login ID, client address) with a per-client throttle, the
client address behind proxies, unguessable login IDs, staff passwords unlike the username.
"""

from __future__ import annotations

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from mimamori.accounts import throttle
from mimamori.accounts.models import ClientEvent, PasswordReset, Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry.models import Registrant
from mimamori.registry.registrants import NewChild, enrol_many
from tests.cast import PASSWORD, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a-new-Passw0rd"
LOCKED = "ログインが一時停止されています"
THROTTLED = "この接続元からのログインの失敗が多すぎる"
SENT = "パスワード再設定用のURLを記載したメールを送信しました"
INVALID = "このURLは使用できません"
LINK = re.compile(r"https?://\S+/portal/password-reset/([A-Za-z0-9_-]+)/")


def client_at(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def log_in(client: Client, login_id: str, password: str = PASSWORD) -> Any:
    return client.post(reverse("portal:login"), {"username": login_id, "password": password})


def logs_in(login_id: str, password: str, address: str = "10.0.0.9") -> bool:
    return log_in(client_at(address), login_id, password).status_code == 302


def request_reset(client: Client, login_id: str, email: str) -> Any:
    return client.post(reverse("portal:password_reset"), {"username": login_id, "email": email}, follow=True)


def body(message: Any) -> str:
    return str(message.get_content())


def mailed_link(sink: Sink, address: str) -> str:
    messages = sink.to(address)
    assert len(messages) == 1
    found = LINK.search(body(messages[0]))
    assert found, body(messages[0])
    return found.group(0)


def _without_csrf(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


# Guardian password reset by mail


def test_the_login_page_links_to_the_password_reset() -> None:
    page = Client().get(reverse("portal:login")).content.decode()
    assert "パスワードを忘れた方" in page
    assert reverse("portal:password_reset") in page


def test_a_guardian_resets_the_password_through_a_one_time_link_from_the_school(
    smtp_sink: Sink, settings: Any
) -> None:
    settings.BASE_URL = "https://mimamori.example.jp"
    municipality = make_municipality(mail_domain="mail.mimamori-iwamizawa.jp")
    school = make_school(municipality, name="緑小学校", local="midori-sho")
    registrant = make_registrant(school, ["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    login_id = registrant.login_id

    answer = request_reset(client_at("10.0.0.2"), login_id, "PAPA@ezweb.ne.jp")
    assert answer.status_code == 200
    assert SENT in answer.content.decode()
    run_until_quiet()
    # To that one address only, from the school, through the outbox.
    assert smtp_sink.copies() == {"papa@ezweb.ne.jp": 1}
    (mail,) = smtp_sink.to("papa@ezweb.ne.jp")
    assert "midori-sho@mail.mimamori-iwamizawa.jp" in mail["From"]
    assert "パスワード再設定" in mail["Subject"]
    link = mailed_link(smtp_sink, "papa@ezweb.ne.jp")
    assert link.startswith("https://mimamori.example.jp/portal/password-reset/")
    token = link.rstrip("/").rpartition("/")[2]
    # No personal data and no ID in the link: 256 random bits.
    assert login_id not in link
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)

    path = reverse("portal:password_reset_confirm", args=[token])
    guardian = client_at("10.0.0.3")
    form = guardian.get(path)
    assert form.status_code == 200
    assert "新しいパスワード" in form.content.decode()
    assert logs_in(login_id, PASSWORD)  # GET changed nothing; the old password still works
    done = guardian.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert "新しいパスワードを設定しました" in done.content.decode()
    assert logs_in(login_id, NEW_PASSWORD)
    assert not logs_in(login_id, PASSWORD)
    # One time only.
    again = guardian.get(path)
    assert again.status_code == 404
    assert INVALID in again.content.decode()
    assert (
        guardian.post(path, {"new_password1": "x-Other-pass9", "new_password2": "x-Other-pass9"}).status_code
        == 404
    )
    assert logs_in(login_id, NEW_PASSWORD)
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", "details"))
    assert ("password_reset.requested", {"matched": True, "slot": 2}) in actions
    assert "password_reset.completed" in [action for action, _ in actions]


def test_the_answer_is_the_same_whether_or_not_the_login_id_and_address_matched(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    staff = make_staff(Role.CENTRE)
    pages = [
        request_reset(Client(), registrant.login_id, "mama@docomo.ne.jp"),
        request_reset(Client(), registrant.login_id, "someone@docomo.ne.jp"),
        request_reset(Client(), "00000000", "mama@docomo.ne.jp"),
        request_reset(Client(), staff.username, "mama@docomo.ne.jp"),
    ]
    assert {page.status_code for page in pages} == {200}
    assert {page.redirect_chain[-1][0] for page in pages} == {reverse("portal:password_reset_sent")}
    assert len({_without_csrf(page.content.decode()) for page in pages}) == 1
    run_until_quiet()
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 1}
    matched = list(
        AuditEvent.objects.filter(action="password_reset.requested").values_list(
            "details__matched", flat=True
        )
    )
    assert sorted(matched) == [False, False, False, True]


def test_the_new_password_must_pass_the_validators_and_match(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    request_reset(Client(), registrant.login_id, "mama@docomo.ne.jp")
    run_until_quiet()
    token = mailed_link(smtp_sink, "mama@docomo.ne.jp").rstrip("/").rpartition("/")[2]
    path = reverse("portal:password_reset_confirm", args=[token])
    for first, second in (
        ("password", "password"),
        (NEW_PASSWORD, NEW_PASSWORD + "x"),
        ("12345678", "12345678"),
    ):
        page = Client().post(path, {"new_password1": first, "new_password2": second})
        assert page.status_code == 200
        assert 'class="errorlist"' in page.content.decode()
    assert logs_in(registrant.login_id, PASSWORD)


def test_an_expired_link_or_one_older_than_a_password_change_says_so(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    for _ in range(2):
        request_reset(Client(), registrant.login_id, "mama@docomo.ne.jp")
    run_until_quiet()
    tokens = [LINK.search(body(m)).group(1) for m in smtp_sink.to("mama@docomo.ne.jp")]  # type: ignore[union-attr]
    assert len(tokens) == 2
    PasswordReset.objects.filter(pk=PasswordReset.objects.order_by("pk").first().pk).update(  # type: ignore[union-attr]
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    expired = Client().get(reverse("portal:password_reset_confirm", args=[tokens[0]]))
    assert expired.status_code == 404
    assert "有効期限が切れている" in expired.content.decode()
    # The guardian changes the password some other way: the second link dies with the old password.
    account = registrant.account
    account.set_password("changed-elsewhere-7")
    account.save()
    assert Client().get(reverse("portal:password_reset_confirm", args=[tokens[1]])).status_code == 404
    assert Client().get(reverse("portal:password_reset_confirm", args=["x" * 43])).status_code == 404


def test_reset_mails_are_limited_per_login_and_requests_per_client(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_RESET_ACCOUNT_LIMIT = 3
    settings.MIMAMORI_RESET_CLIENT_LIMIT = 10
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    # A stranger who knows the address, from many connections: at most 3 mails an hour.
    for n in range(8):
        assert (
            SENT
            in request_reset(
                client_at(f"10.1.0.{n}"), registrant.login_id, "mama@docomo.ne.jp"
            ).content.decode()
        )
    run_until_quiet()
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 3}
    # One connection: 10 requests an hour, whatever they name.
    stranger = client_at("10.2.0.1")
    for n in range(10):
        assert request_reset(stranger, f"1000000{n}", "x@docomo.ne.jp").status_code == 200
    refused = request_reset(stranger, registrant.login_id, "mama@docomo.ne.jp")
    assert refused.status_code == 429
    assert "お申し込みが多すぎます" in refused.content.decode()
    assert request_reset(client_at("10.2.0.2"), "10000000", "x@docomo.ne.jp").status_code == 200


def test_a_successful_reset_lifts_the_lockout_of_the_login(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    phone = client_at("10.0.0.5")
    for _ in range(5):
        log_in(phone, registrant.login_id, "wrong-password-1")
    assert LOCKED in log_in(phone, registrant.login_id).content.decode()
    request_reset(phone, registrant.login_id, "mama@docomo.ne.jp")
    run_until_quiet()
    token = mailed_link(smtp_sink, "mama@docomo.ne.jp").rstrip("/").rpartition("/")[2]
    phone.post(
        reverse("portal:password_reset_confirm", args=[token]),
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert log_in(phone, registrant.login_id, NEW_PASSWORD).status_code == 302


# The lockout: per (login ID, client address), and a per-client throttle across login IDs


def test_a_stranger_elsewhere_cannot_lock_the_owner_out() -> None:
    registrant = make_registrant()
    stranger = client_at("10.0.0.2")
    for _ in range(10):
        log_in(stranger, registrant.login_id, "wrong-password-1")
    assert LOCKED in log_in(stranger, registrant.login_id).content.decode()
    owner = client_at("10.0.0.3")
    assert log_in(owner, registrant.login_id).status_code == 302


def test_one_client_failing_across_many_login_ids_is_throttled_everywhere(settings: Any) -> None:
    settings.MIMAMORI_CLIENT_FAILURE_LIMIT = 12
    guardians = [make_registrant() for _ in range(4)]
    attacker = client_at("10.0.0.2")
    for n in range(12):
        log_in(attacker, guardians[n % 3].login_id, f"guess-{n}")  # 4 a login: none locked yet
    # The right password of a fourth guardian, from the attacker's address: refused.
    refused = log_in(attacker, guardians[3].login_id)
    assert refused.status_code == 429
    assert THROTTLED in refused.content.decode()
    staff = make_staff(Role.CENTRE)
    console = attacker.post(reverse("console:login"), {"username": staff.username, "password": PASSWORD})
    assert console.status_code == 429
    # Everyone else logs in as usual.
    assert logs_in(guardians[3].login_id, PASSWORD, "10.0.0.3")
    assert logs_in(guardians[0].login_id, PASSWORD, "10.0.0.3")


def test_the_first_login_code_form_shares_the_lockout_and_the_throttle(settings: Any) -> None:
    settings.MIMAMORI_CLIENT_FAILURE_LIMIT = 8
    pending = make_registrant(password=None)
    other = make_registrant(password=None)
    from mimamori.registry.letters import reissue_registration_codes

    (enrolment,) = reissue_registration_codes([pending])
    attacker = client_at("10.0.0.2")
    url = reverse("portal:first_login")

    def first_login(client: Client, login_id: str, code: str) -> Any:
        data = {
            "username": login_id,
            "code": code,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        }
        return client.post(url, data)

    for n in range(8):
        first_login(attacker, other.login_id if n % 2 else "10000001", f"AAAA-BBBB-CC{n:02d}")
    refused = first_login(attacker, pending.login_id, enrolment.registration_code)
    assert refused.status_code == 429
    assert THROTTLED in refused.content.decode()
    assert log_in(attacker, other.login_id, "whatever-1").status_code == 429
    assert (
        first_login(client_at("10.0.0.3"), pending.login_id, enrolment.registration_code).status_code == 302
    )


def test_old_client_events_are_pruned_by_the_sweep(settings: Any) -> None:
    log_in(client_at("10.0.0.2"), "10000000", "wrong")
    assert ClientEvent.objects.count() == 1
    assert throttle.prune(timezone.now()) == 0
    assert throttle.prune(timezone.now() + timedelta(hours=2)) == 1
    assert not ClientEvent.objects.exists()


# The client address behind reverse proxies


def test_behind_a_proxy_the_lockout_throttle_and_audit_log_use_the_forwarded_address(settings: Any) -> None:
    settings.MIMAMORI_PROXY_COUNT = 1
    registrant = make_registrant()
    proxy = "127.0.0.1"

    def via_proxy(client_address: str, forged: str = "") -> Client:
        forwarded = f"{forged}, {client_address}" if forged else client_address
        return Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=forwarded)

    # The attacker forges the left part of the header; only the proxy's entry counts.
    for _ in range(5):
        log_in(via_proxy("203.0.113.7", forged="198.51.100.1"), registrant.login_id, "wrong-password-1")
    assert LOCKED in log_in(via_proxy("203.0.113.7"), registrant.login_id).content.decode()
    # The owner comes through the same proxy from elsewhere.
    assert log_in(via_proxy("198.51.100.1"), registrant.login_id).status_code == 302
    addresses = set(AuditEvent.objects.filter(action="login.failed").values_list("ip_address", flat=True))
    assert addresses == {"203.0.113.7"}
    assert set(ClientEvent.objects.values_list("address", flat=True)) == {"203.0.113.7"}


# Staff: unlock and reset from the console


def console_client(user: User) -> Client:
    user.refresh_from_db()  # force_login signs the session with the password as it is now
    client = Client()
    client.force_login(user)
    return client


def lock(login_id: str, address: str = "10.0.0.7") -> None:
    for _ in range(5):
        log_in(client_at(address), login_id, "wrong-password-1")
    assert LOCKED in log_in(client_at(address), login_id).content.decode()


def test_school_staff_see_and_unlock_their_guardians_and_nobody_elses() -> None:
    school, other_school = make_school(), make_school()
    registrant = make_registrant(school)
    foreign = make_registrant(other_school)
    lock(registrant.login_id)
    lock(foreign.login_id)
    staff = console_client(make_staff(Role.SCHOOL, school=school))
    page = staff.get(reverse("console:lockouts")).content.decode()
    assert registrant.login_id in page
    assert foreign.login_id not in page
    detail = staff.get(reverse("console:registrant", args=[registrant.pk])).content.decode()
    assert "data-locked" in detail
    assert staff.post(reverse("console:unlock", args=[foreign.account_id])).status_code == 404
    done = staff.post(reverse("console:unlock", args=[registrant.account_id]), {"back": "registrant"})
    assert done.status_code == 302
    assert done["Location"] == reverse("console:registrant", args=[registrant.pk])
    assert log_in(client_at("10.0.0.7"), registrant.login_id).status_code == 302
    assert LOCKED in log_in(client_at("10.0.0.7"), foreign.login_id).content.decode()
    event = AuditEvent.objects.get(action="login.unlocked")
    assert event.target == f"user {registrant.login_id}"
    assert event.municipality_id == school.municipality_id


def test_who_may_reset_whose_staff_password() -> None:
    city, other_city = make_municipality(), make_municipality()
    school, other_school = make_school(city), make_school(other_city)
    centre = make_staff(Role.CENTRE)
    another_centre = make_staff(Role.CENTRE)
    city_staff = make_staff(Role.MUNICIPALITY, municipality=city)
    city_colleague = make_staff(Role.MUNICIPALITY, municipality=city)
    school_staff = make_staff(Role.SCHOOL, school=school)
    school_colleague = make_staff(Role.SCHOOL, school=school)
    other_city_staff = make_staff(Role.MUNICIPALITY, municipality=other_city)
    other_school_staff = make_staff(Role.SCHOOL, school=other_school)
    everyone = [centre, another_centre, city_staff, city_colleague, school_staff, school_colleague]
    everyone += [other_city_staff, other_school_staff]
    allowed = {
        centre: set(everyone) - {centre},
        city_staff: {city_colleague, school_staff, school_colleague},
        school_staff: set(),
    }
    for actor, targets in allowed.items():
        for target in everyone:
            response = console_client(actor).post(reverse("console:staff_password_reset", args=[target.pk]))
            expected = 200 if target in targets else 404
            assert response.status_code == expected, (actor.role, target.role, target.username)
    assert console_client(school_staff).get(reverse("console:staff")).status_code == 404
    page = console_client(city_staff).get(reverse("console:staff")).content.decode()
    assert school_staff.username in page
    assert other_school_staff.username not in page


def test_a_staff_reset_ends_the_old_password_and_hands_over_a_one_time_link() -> None:
    city = make_municipality()
    admin = make_staff(Role.MUNICIPALITY, municipality=city)
    teacher = make_staff(Role.SCHOOL, school=make_school(city), username="tanaka-sensei")
    page = console_client(admin).post(reverse("console:staff_password_reset", args=[teacher.pk]))
    assert page["Cache-Control"].startswith("no-store") or "no-store" in page["Cache-Control"]
    link = re.search(r"<code data-reset-link>(\S+)</code>", page.content.decode())
    assert link
    path = link.group(1).partition("://")[2].partition("/")[2]
    path = "/" + path
    login = reverse("console:login")
    assert Client().post(login, {"username": "tanaka-sensei", "password": PASSWORD}).status_code == 200
    newcomer = Client()
    assert newcomer.get(path).status_code == 200
    # Like the username: refused.
    same = newcomer.post(path, {"new_password1": "tanaka-sensei", "new_password2": "tanaka-sensei"})
    assert same.status_code == 200
    assert "errorlist" in same.content.decode()
    done = newcomer.post(path, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert Client().post(login, {"username": "tanaka-sensei", "password": NEW_PASSWORD}).status_code == 302
    assert newcomer.get(path).status_code == 404
    actions = list(AuditEvent.objects.values_list("action", "actor_name"))
    assert ("staff.password_reset", admin.username) in actions
    assert ("password_reset.completed", "tanaka-sensei") in actions
    # A staff link is no guardian link, and the other way round.
    token = path.rstrip("/").rpartition("/")[2]
    assert Client().get(reverse("portal:password_reset_confirm", args=[token])).status_code == 404


def test_a_guardian_link_opens_no_console_page(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp"])
    request_reset(Client(), registrant.login_id, "mama@docomo.ne.jp")
    run_until_quiet()
    token = mailed_link(smtp_sink, "mama@docomo.ne.jp").rstrip("/").rpartition("/")[2]
    assert Client().get(reverse("console:password_reset_confirm", args=[token])).status_code == 404


# Registration letters for any registrant


def test_a_new_letter_lets_a_guardian_who_forgot_the_password_set_a_new_one() -> None:
    school = make_school()
    registrant = make_registrant(school)
    staff = console_client(make_staff(Role.SCHOOL, school=school))
    detail = staff.get(reverse("console:registrant", args=[registrant.pk])).content.decode()
    assert "登録通知書を再発行" in detail
    letters = staff.post(reverse("console:letters", args=[school.pk]), {"registrant": [registrant.pk]})
    assert letters.status_code == 200
    code = re.search(r'class="code">([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})<', letters.content.decode())
    assert code
    # The old password works until the new code is used.
    assert logs_in(registrant.login_id, PASSWORD)
    first = client_at("10.0.0.4").post(
        reverse("portal:first_login"),
        {
            "username": registrant.login_id,
            "code": code.group(1),
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )
    assert first.status_code == 302, first.content.decode()
    assert not logs_in(registrant.login_id, PASSWORD)
    assert logs_in(registrant.login_id, NEW_PASSWORD)
    event = AuditEvent.objects.get(action="export.registration_letters")
    assert event.details["reissued_after_login"] == [registrant.pk]


# Login IDs and staff passwords


def test_login_ids_of_one_import_are_not_in_sequence() -> None:
    school = make_school()
    enrolments = enrol_many(
        school, [NewChild(child_name=f"児童{n}", grade=1, class_name="1") for n in range(200)]
    )
    ids = [int(e.registrant.login_id) for e in enrolments]
    assert len(set(ids)) == 200
    steps = {b - a for a, b in zip(sorted(ids), sorted(ids)[1:], strict=False)}
    assert len(steps) > 100  # no common stride
    assert sum(1 for step in steps if step <= 10) < 5
    in_order = [int(r.login_id) for r in Registrant.objects.filter(school=school).order_by("pk")]
    assert in_order != sorted(in_order)


def test_a_staff_password_like_the_username_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError):
        validate_password("suzuki-teacher", User(username="suzuki-teacher", role=Role.CENTRE))
    with pytest.raises(CommandError):
        call_command(
            "createstaff",
            "suzuki-teacher",
            "--role",
            "centre",
            "--password-stdin",
            stdin=io.StringIO("suzuki-teacher\n"),
            stdout=io.StringIO(),
        )
    assert not User.objects.filter(username="suzuki-teacher").exists()
    assert not DBTaskResult.objects.exists()

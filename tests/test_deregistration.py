"""登録解除届 (S10), retention (S10) and 転校 within the city (S11)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.confirming import find_delivery, record_confirmation
from mimamori.receipts.models import Receipt
from mimamori.registry.models import (
    Address,
    DeregistrationRequest,
    DeregistrationSource,
    DeregistrationStatus,
    Registrant,
    RegistrantStatus,
    School,
)
from mimamori.registry.registrants import find_first_login
from mimamori.registry.retention import ERASED_NAME, erase_expired
from mimamori.tasking.sweep import sweep
from tests.cast import PASSWORD, make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

TODAY = "2025-03-31"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def guardian_files(registrant: Registrant, **fields: Any) -> Any:
    """Both steps: the form, then 「この内容で届け出る」 on the confirmation page."""
    data = {"reason": "graduation", "effective_on": TODAY, "note": "", "confirmed": "1", **fields}
    return signed_in(registrant.account).post(reverse("portal:deregistration"), data)


def approve(staff: User, registrant: Registrant, **fields: str) -> Any:
    return signed_in(staff).post(reverse("console:deregistration_approve", args=[registrant.pk]), fields)


def can_log_in(login_id: str, password: str = PASSWORD) -> bool:
    response = Client().post(reverse("portal:login"), {"username": login_id, "password": password})
    return response.status_code == 302


def broadcast_to(school: School, *, confirmation: bool = False) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="下校時は気をつけてください。",
        scope=resolve_scope(staff),
        request_confirmation=confirmation,
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    broadcast.refresh_from_db()
    return broadcast


def test_after_approval_nothing_is_sent_and_the_login_fails(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_RETRY_BASE_SECONDS = 0
    school = make_school()
    leaving = make_registrant(school, ["leaving@docomo.ne.jp", "leaving.papa@gmail.com"])
    make_registrant(school, ["staying@ezweb.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    assert can_log_in(leaving.login_id)

    response = guardian_files(leaving, reason="moving_away", note="札幌へ引っ越します")
    assert response.status_code == 302
    filed = DeregistrationRequest.objects.get(registrant=leaving)
    assert (filed.status, filed.source) == (DeregistrationStatus.PENDING, DeregistrationSource.ONLINE)
    assert "承認待ち" in signed_in(leaving.account).get(reverse("portal:deregistration")).content.decode()
    page = signed_in(staff).get(reverse("console:deregistrations")).content.decode()
    assert leaving.child_name in page
    assert "転校（市外）" in page

    assert approve(staff, leaving).status_code == 302
    leaving.refresh_from_db()
    filed.refresh_from_db()
    assert leaving.status == RegistrantStatus.DEREGISTERED
    assert (filed.status, filed.decided_by) == (DeregistrationStatus.APPROVED, staff)
    event = AuditEvent.objects.get(action="registrant.deregistered")
    assert event.actor == staff
    assert event.target == f"registrant {leaving.pk}"

    broadcast_to(school)
    assert len(smtp_sink.to("staying@ezweb.ne.jp")) == 1
    # The approval's notice (test_the_guardian_is_mailed_the_decision), and no broadcast.
    for address in ("leaving@docomo.ne.jp", "leaving.papa@gmail.com"):
        assert [m["Subject"] for m in smtp_sink.to(address)] == [f"【{school.name}】登録解除届を承認しました"]
    assert not can_log_in(leaving.login_id)
    # A session opened before the approval ends with it.
    assert signed_in(leaving.account).get(reverse("portal:home")).status_code == 302


def test_a_guardian_cannot_file_twice_while_waiting() -> None:
    registrant = make_registrant(make_school(), ["a@docomo.ne.jp"])
    assert guardian_files(registrant).status_code == 302
    again = guardian_files(registrant, reason="other")
    assert again.status_code == 409
    assert "承認待ち" in again.content.decode()
    assert DeregistrationRequest.objects.filter(registrant=registrant).count() == 1


def test_a_guardian_sees_only_their_own_request() -> None:
    school = make_school()
    mine, theirs = make_registrant(school, ["a@docomo.ne.jp"]), make_registrant(school, ["b@docomo.ne.jp"])
    guardian_files(theirs, reason="other", note="秘密の事情です")
    page = signed_in(mine.account).get(reverse("portal:deregistration")).content.decode()
    assert "秘密の事情" not in page
    assert "承認待ち" not in page
    assert "次へ（内容の確認）" in page  # the form to file one


def test_staff_of_another_school_cannot_approve_or_reject() -> None:
    city = make_municipality()
    school, other_school = make_school(city), make_school(city)
    registrant = make_registrant(school, ["a@docomo.ne.jp"])
    guardian_files(registrant)
    outsider = make_staff(Role.SCHOOL, school=other_school)
    assert approve(outsider, registrant).status_code == 404
    url = reverse("console:deregistration_reject", args=[registrant.pk])
    assert signed_in(outsider).post(url).status_code == 404
    assert (
        registrant.child_name
        not in signed_in(outsider).get(reverse("console:deregistrations")).content.decode()
    )
    registrant.refresh_from_db()
    assert registrant.is_active
    assert DeregistrationRequest.objects.get().status == DeregistrationStatus.PENDING


def test_staff_enter_a_paper_form_and_can_reject_it() -> None:
    school = make_school()
    registrant = make_registrant(school, ["a@docomo.ne.jp"])
    staff = make_staff(Role.MUNICIPALITY, municipality=school.municipality)
    url = reverse("console:registrant_deregistration", args=[registrant.pk])
    response = signed_in(staff).post(url, {"reason": "graduation", "effective_on": TODAY})
    assert response.status_code == 302
    filed = DeregistrationRequest.objects.get()
    assert (filed.source, filed.submitted_by) == (DeregistrationSource.PAPER, staff)
    signed_in(staff).post(reverse("console:deregistration_reject", args=[registrant.pk]))
    filed.refresh_from_db()
    registrant.refresh_from_db()
    assert filed.status == DeregistrationStatus.REJECTED
    assert registrant.is_active
    assert can_log_in(registrant.login_id)
    assert AuditEvent.objects.filter(action="deregistration.rejected").count() == 1


def test_after_the_retention_period_personal_data_goes_and_statistics_stay(
    smtp_sink: Sink, settings: Any
) -> None:
    settings.MIMAMORI_RETRY_BASE_SECONDS = 0
    settings.MIMAMORI_RETENTION_DAYS = 30
    school = make_school()
    leaving = make_registrant(school, ["leaving@docomo.ne.jp"], child_name="転出 花子")
    make_registrant(school, ["staying@ezweb.ne.jp"])
    broadcast = broadcast_to(school, confirmation=True)
    delivery = find_delivery(Delivery.objects.get(email="leaving@docomo.ne.jp").confirmation_token or "")
    assert delivery is not None
    record_confirmation(delivery)

    def statistics() -> tuple[object, ...]:
        broadcast.refresh_from_db()
        groups = list(
            AudienceGroup.objects.filter(broadcast=broadcast).values_list("registrants", "confirmed")
        )
        return (
            broadcast.registrant_count,
            broadcast.message_count,
            groups,
            Receipt.objects.filter(broadcast=broadcast).count(),
            Delivery.objects.filter(broadcast=broadcast).count(),
        )

    before = statistics()
    assert before[0] == 2
    guardian_files(leaving)
    approve(make_staff(Role.SCHOOL, school=school), leaving)
    old_login = leaving.login_id

    # Still inside the retention period: nothing is erased.
    assert erase_expired(timezone.now() + timedelta(days=29)) == 0
    assert erase_expired(timezone.now() + timedelta(days=31)) == 1
    assert erase_expired(timezone.now() + timedelta(days=31)) == 0

    leaving.refresh_from_db()
    account = User.objects.get(pk=leaving.account_id)
    assert leaving.child_name == ERASED_NAME
    assert leaving.child_name_kana == ""
    assert not Address.objects.filter(registrant=leaving).exists()
    assert not Delivery.objects.filter(email="leaving@docomo.ne.jp").exists()
    assert account.username != old_login
    assert not User.objects.filter(username=old_login).exists()
    assert not account.has_usable_password()
    assert not account.is_active
    assert not can_log_in(old_login)
    assert statistics() == before
    assert (
        AuditEvent.objects.filter(action="registrant.erased", target=f"registrant {leaving.pk}").count() == 1
    )


def test_the_sweep_and_the_command_erase_expired_registrants(settings: Any) -> None:
    settings.MIMAMORI_RETENTION_DAYS = 10
    school = make_school()
    old, recent = make_registrant(school, ["old@docomo.ne.jp"]), make_registrant(school, ["new@docomo.ne.jp"])
    for registrant, days in ((old, 11), (recent, 3)):
        Registrant.objects.filter(pk=registrant.pk).update(
            status=RegistrantStatus.DEREGISTERED, deregistered_at=timezone.now() - timedelta(days=days)
        )
    assert sweep()["erased"] == 1
    assert Registrant.objects.get(pk=old.pk).child_name == ERASED_NAME
    assert Registrant.objects.get(pk=recent.pk).child_name == recent.child_name

    settings.MIMAMORI_RETENTION_DAYS = 1
    call_command("erase_expired", stdout=(out := _Out()))
    assert "Erased 1" in out.text
    assert Registrant.objects.get(pk=recent.pk).child_name == ERASED_NAME


class _Out:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


CODE = re.compile(r'class="code">([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})<')


def test_a_transfer_within_the_city_yields_a_working_registration_at_the_new_school() -> None:
    city = make_municipality()
    old_school, new_school = make_school(city, name="旧小学校"), make_school(city, name="新小学校")
    moving = make_registrant(old_school, ["move.mama@docomo.ne.jp", "move.papa@gmail.com"])
    old_staff = make_staff(Role.SCHOOL, school=old_school)
    new_staff = make_staff(Role.SCHOOL, school=new_school)

    url = reverse("console:registrant_deregistration", args=[moving.pk])
    signed_in(old_staff).post(
        url, {"reason": "transfer_within", "effective_on": TODAY, "destination_school": new_school.pk}
    )
    approve(old_staff, moving, destination_school=str(new_school.pk))
    moving.refresh_from_db()
    assert not moving.is_active

    transfer_url = reverse("console:school_transfer_in", args=[new_school.pk])
    form = signed_in(new_staff).get(transfer_url).content.decode()
    assert "転入登録" in form
    assert moving.child_name in form  # offered as an incoming transfer
    filed = DeregistrationRequest.objects.get(registrant=moving)
    response = signed_in(new_staff).post(
        transfer_url,
        {
            "previous": filed.pk,
            "copy_addresses": "on",
            "child_name": moving.child_name,
            "child_name_kana": moving.child_name_kana,
            "grade": 4,
            "class_name": "2",
        },
    )
    assert response.status_code == 200
    letter = response.content.decode()
    new = Registrant.objects.get(school=new_school)
    assert new.login_id != moving.login_id
    assert new.login_id in letter
    match = CODE.search(letter)
    assert match
    assert find_first_login(new.login_id, match.group(1)) == new
    assert new.addresses_by_slot() == {1: "move.mama@docomo.ne.jp", 2: "move.papa@gmail.com", 3: "", 4: ""}
    moving.refresh_from_db()
    assert not moving.is_active  # the old registration stays deregistered
    # Offered once: the transfer is not offered again.
    assert moving.child_name not in signed_in(new_staff).get(transfer_url).content.decode()


def test_transfer_in_without_a_previous_registration_copies_nothing() -> None:
    school = make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    url = reverse("console:school_transfer_in", args=[school.pk])
    response = signed_in(staff).post(
        url, {"child_name": "転入 次郎", "grade": 2, "class_name": "1", "copy_addresses": "on"}
    )
    assert response.status_code == 400
    response = signed_in(staff).post(url, {"child_name": "転入 次郎", "grade": 2, "class_name": "1"})
    assert response.status_code == 200
    assert not Address.objects.filter(registrant__school=school).exists()


def test_an_incoming_transfer_is_not_offered_to_another_citys_school() -> None:
    school = make_school(make_municipality())
    other_city_school = make_school(make_municipality())
    moving = make_registrant(school, ["a@docomo.ne.jp"])
    staff = make_staff(Role.CENTRE)
    url = reverse("console:registrant_deregistration", args=[moving.pk])
    response = signed_in(staff).post(
        url, {"reason": "transfer_within", "effective_on": TODAY, "destination_school": other_city_school.pk}
    )
    assert response.status_code == 400
    assert not DeregistrationRequest.objects.exists()


# Issue 14: confirmation, withdrawal, the destination of a transfer within the city, the decision mailed


def test_the_first_press_shows_the_request_to_confirm_and_files_nothing() -> None:
    registrant = make_registrant(make_school(), ["a@docomo.ne.jp"])
    client = signed_in(registrant.account)
    url = reverse("portal:deregistration")
    data = {"reason": "moving_away", "effective_on": TODAY, "note": "札幌へ引っ越します"}
    page = client.post(url, data)
    assert page.status_code == 200
    body = page.content.decode()
    assert "登録解除届の内容確認" in body
    assert "まだ届け出ていません" in body
    for shown in ("転校（市外）", "2025-03-31", "札幌へ引っ越します"):
        assert shown in body
    assert "このログインIDも使えなくなります" in body
    assert 'name="confirmed"' in body
    assert 'name="back"' in body
    assert not DeregistrationRequest.objects.exists()
    # 「戻って修正する」: the form again, filled in, still nothing filed.
    back = client.post(url, {**data, "back": "1"}).content.decode()
    assert "次へ（内容の確認）" in back
    assert "札幌へ引っ越します</textarea>" in back
    assert not DeregistrationRequest.objects.exists()
    # 「この内容で届け出る」
    assert client.post(url, {**data, "confirmed": "1"}).status_code == 302
    assert DeregistrationRequest.objects.get().note == "札幌へ引っ越します"


def test_a_transfer_within_the_city_needs_the_new_school_online_and_on_paper() -> None:
    city = make_municipality()
    school, new_school = make_school(city), make_school(city)
    registrant = make_registrant(school, ["a@docomo.ne.jp"])
    for confirmed in ("", "1"):
        fields = {"reason": "transfer_within", "confirmed": confirmed} if confirmed else {}
        data = {"reason": "transfer_within", "effective_on": TODAY, "note": "", **fields}
        response = signed_in(registrant.account).post(reverse("portal:deregistration"), data)
        assert response.status_code == 200
        assert "転校（市内）の場合は、転校先の学校を選んでください" in response.content.decode()
    assert not DeregistrationRequest.objects.exists()
    staff = make_staff(Role.SCHOOL, school=school)
    url = reverse("console:registrant_deregistration", args=[registrant.pk])
    response = signed_in(staff).post(url, {"reason": "transfer_within", "effective_on": TODAY})
    assert response.status_code == 400
    assert not DeregistrationRequest.objects.exists()
    assert (
        guardian_files(registrant, reason="transfer_within", destination_school=new_school.pk).status_code
        == 302
    )
    assert DeregistrationRequest.objects.get().destination_school == new_school


def test_a_guardian_withdraws_a_waiting_request_and_staff_can_no_longer_approve_it() -> None:
    school = make_school()
    registrant = make_registrant(school, ["a@docomo.ne.jp"])
    guardian = signed_in(registrant.account)
    assert guardian.get(reverse("portal:deregistration_withdraw")).status_code == 405
    guardian_files(registrant)
    assert "この届を取り下げる" in guardian.get(reverse("portal:deregistration")).content.decode()
    response = guardian.post(reverse("portal:deregistration_withdraw"), follow=True)
    assert "登録解除届を取り下げました" in response.content.decode()
    filed = DeregistrationRequest.objects.get()
    assert (filed.status, filed.decided_by) == (DeregistrationStatus.WITHDRAWN, registrant.account)
    event = AuditEvent.objects.get(action="deregistration.withdrawn")
    assert event.actor == registrant.account
    staff = make_staff(Role.SCHOOL, school=school)
    approve(staff, registrant)
    registrant.refresh_from_db()
    assert registrant.is_active
    assert can_log_in(registrant.login_id)
    # A second press finds nothing to withdraw; a new request can be filed.
    again = guardian.post(reverse("portal:deregistration_withdraw"), follow=True).content.decode()
    assert "学校の判断を待っている登録解除届はありません" in again
    assert guardian_files(registrant).status_code == 302


@pytest.mark.django_db(transaction=True)
def test_the_guardian_is_mailed_the_decision(smtp_sink: Sink) -> None:
    city = make_municipality()
    school, new_school = make_school(city), make_school(city, name="みどり小学校")
    staying = make_registrant(school, ["stay@docomo.ne.jp", "", "", "stay.gran@gmail.com"])
    leaving = make_registrant(school, ["leave@docomo.ne.jp", "leave.papa@ezweb.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    guardian_files(staying)
    signed_in(staff).post(reverse("console:deregistration_reject", args=[staying.pk]))
    guardian_files(leaving, reason="transfer_within", destination_school=new_school.pk)
    approve(staff, leaving)
    while run_queued_tasks():
        pass

    for address in ("stay@docomo.ne.jp", "stay.gran@gmail.com"):
        (mail,) = smtp_sink.to(address)
        assert mail["Subject"] == f"【{school.name}】登録解除届についてのお知らせ"
        body = mail.get_body().get_content()  # type: ignore[union-attr]
        assert staying.child_name in body
        assert "受理されませんでした" in body
        assert "これまでどおり配信されます" in body
    (mail,) = smtp_sink.to("leave@docomo.ne.jp")
    assert mail["Subject"] == f"【{school.name}】登録解除届を承認しました"
    body = mail.get_body().get_content()  # type: ignore[union-attr]
    assert "理由: 転校（市内）" in body
    assert "配信は終了しました" in body
    assert "転校先の みどり小学校 から新しい登録通知書" in body
    assert len(smtp_sink.to("leave.papa@ezweb.ne.jp")) == 1

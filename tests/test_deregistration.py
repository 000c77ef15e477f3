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


def guardian_files(registrant: Registrant, **fields: str) -> Any:
    data = {"reason": "graduation", "effective_on": TODAY, "note": "", **fields}
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
    assert smtp_sink.to("leaving@docomo.ne.jp") == []
    assert smtp_sink.to("leaving.papa@gmail.com") == []
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
    assert "登録解除届を提出" in page


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

"""The portal's gate pages (B6): the gate mails' slots on オプション, and 登下校の記録."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.audit.models import AuditEvent
from mimamori.gates import passes, readers
from mimamori.gates.models import GatePreference, GateReader
from mimamori.mail.models import OutgoingMail
from mimamori.registry.models import Registrant, School
from tests.cast import make_municipality, make_registrant, make_school

pytestmark = pytest.mark.django_db

ADDRESSES = ["mama@docomo.ne.jp", "papa@ezweb.ne.jp", "grandma@au.com", None]


@pytest.fixture
def school() -> School:
    return make_school(make_municipality("minato"), name="港小学校", local="minato-es")


@pytest.fixture
def reader(school: School) -> GateReader:
    return readers.register(school, "正門", "校舎南側", by=None)[0]


@pytest.fixture
def taro(school: School) -> Registrant:
    registrant = make_registrant(school, ADDRESSES, child_name="山田太郎")
    registrant.tag_id = "TAG-1"
    registrant.save(update_fields=["tag_id"])
    return registrant


def guardian(registrant: Registrant) -> Client:
    client = Client()
    client.force_login(registrant.account)
    return client


def text(response: Any) -> str:
    assert response.status_code == 200
    return str(response.content.decode())


def test_the_options_page_offers_the_four_slots_all_ticked_by_default(
    reader: GateReader, taro: Registrant
) -> None:
    page = text(guardian(taro).get(reverse("portal:options")))
    assert "登下校メール" in page
    assert "アドレス1: mama@docomo.ne.jp" in page
    assert "アドレス4: 未登録" in page
    assert page.count('name="gate_slots"') == 4
    assert page.count('name="gate_slots" value="') == 4
    assert page.count("checked") == 1 + 4  # 連絡メールを受信する and the four slots


def test_choosing_slots_is_saved_audited_and_the_next_pass_follows_it(
    reader: GateReader, taro: Registrant
) -> None:
    client = guardian(taro)
    response = client.post(reverse("portal:options"), {"receive_broadcasts": "on", "gate_slots": ["2"]})
    assert response.status_code == 302
    assert GatePreference.objects.get(registrant=taro).slots == [2]
    event = AuditEvent.objects.get(action="registrant.gate_slots_changed")
    assert (event.details["slots"], event.details["before"]) == ([2], [1, 2, 3, 4])
    taro.refresh_from_db()
    assert taro.receive_broadcasts is True
    now = timezone.now()
    passes.record(reader, [{"id": "1", "tag": "TAG-1", "direction": "in", "at": now.isoformat()}], now)
    assert list(OutgoingMail.objects.values_list("to", flat=True)) == ["papa@ezweb.ne.jp"]
    # The same choice again changes nothing and records nothing.
    client.post(reverse("portal:options"), {"receive_broadcasts": "on", "gate_slots": ["2"]})
    assert AuditEvent.objects.filter(action="registrant.gate_slots_changed").count() == 1


def test_none_ticked_means_no_gate_mail_and_says_so(reader: GateReader, taro: Registrant) -> None:
    client = guardian(taro)
    response = client.post(reverse("portal:options"), {"receive_broadcasts": "on"}, follow=True)
    assert "登下校メールは送られません" in text(response)
    assert GatePreference.objects.get(registrant=taro).slots == []
    assert "checked" in text(client.get(reverse("portal:options")))  # 連絡メール only
    assert text(client.get(reverse("portal:options"))).count("checked") == 1


def test_a_slot_outside_one_to_four_is_refused(reader: GateReader, taro: Registrant) -> None:
    response = guardian(taro).post(reverse("portal:options"), {"gate_slots": ["5"]})
    assert response.status_code == 200  # the form again, with the error
    assert not GatePreference.objects.exists()


def test_without_a_reader_the_options_page_has_no_gate_choice(taro: Registrant) -> None:
    page = text(guardian(taro).get(reverse("portal:options")))
    assert "登下校メール" not in page
    guardian(taro).post(reverse("portal:options"), {"receive_broadcasts": "on", "gate_slots": ["1"]})
    assert not GatePreference.objects.exists()


def test_the_passes_page_shows_todays_and_the_last_weeks_passes_of_the_child_only(
    school: School, reader: GateReader, taro: Registrant
) -> None:
    sibling_in_class = make_registrant(school, ["other@docomo.ne.jp"])
    sibling_in_class.tag_id = "TAG-2"
    sibling_in_class.save(update_fields=["tag_id"])
    now = timezone.now()
    at = [now - timedelta(minutes=2), now - timedelta(days=3), now - timedelta(days=9)]
    passes.record(
        reader,
        [
            {"id": "a", "tag": "TAG-1", "direction": "in", "at": at[0].isoformat()},
            {
                "id": "a2",
                "tag": "TAG-1",
                "direction": "in",
                "at": (at[0] + timedelta(seconds=20)).isoformat(),
            },
            {"id": "b", "tag": "TAG-1", "direction": "out", "at": at[1].isoformat()},
            {"id": "c", "tag": "TAG-1", "direction": "in", "at": at[2].isoformat()},
            {"id": "d", "tag": "TAG-2", "direction": "in", "at": at[0].isoformat()},
        ],
        now,
    )
    page = text(guardian(taro).get(reverse("portal:passes")))
    assert "登下校の記録" in page
    assert "今日" in page
    assert page.count("<li data-direction=") == 2  # the repeat read, the old one and the other child left out
    assert page.count('data-direction="in"') == 1
    assert page.count('data-direction="out"') == 1
    local = timezone.localtime(at[0])
    assert f"{local.hour}:{local.minute:02d}" in page
    assert "正門 (校舎南側)" in page
    assert "メールなし（読み取り機からの記録が遅れて届いたため）" in page  # three days ago: a backlog
    home = text(guardian(taro).get(reverse("portal:home")))
    assert reverse("portal:passes") in home


def test_the_passes_page_needs_a_guardian() -> None:
    response = Client().get(reverse("portal:passes"))
    assert response.status_code == 302
    assert reverse("portal:login") in response["Location"]


def test_the_page_in_english(reader: GateReader, taro: Registrant) -> None:
    client = guardian(taro)
    page = text(client.get(reverse("portal:passes"), headers={"Accept-Language": "en"}))
    assert "Arrivals and departures" in page

"""S7 and S8: address rules and the 登録完了メール."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from mimamori.registry.addresses import clean_address_slots, normalise_address, set_addresses
from mimamori.registry.models import Address
from tests.cast import make_registrant
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("value", "expected_words"),
    [
        ("a..b@docomo.ne.jp", "連続"),
        ("abc.@ezweb.ne.jp", "直前"),
        (".abc@softbank.ne.jp", "先頭"),
        ("taro", "@"),
        ("taro@docomo", "ドメイン"),
        ("山田@example.jp", "使えない文字"),
        ("a b@example.jp", "使えない文字"),
        ("x" * 65 + "@example.jp", "長すぎ"),
        ("x@" + "d" * 250 + ".jp", "長すぎ"),
    ],
)
def test_undeliverable_forms_are_refused_with_a_japanese_reason(value: str, expected_words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalise_address(value)
    assert expected_words in caught.value.messages[0]


@pytest.mark.parametrize(
    "value", ["taro.yamada@docomo.ne.jp", "Hanako_1980@ezweb.ne.jp", "papa+school@gmail.com", "work@例え.jp"]
)
def test_deliverable_addresses_are_accepted(value: str) -> None:
    assert "@" in normalise_address(value)


def test_the_same_address_twice_is_refused_for_the_second_slot() -> None:
    with pytest.raises(ValidationError) as caught:
        clean_address_slots(["mama@docomo.ne.jp", "MAMA@docomo.ne.jp"])
    assert set(caught.value.message_dict) == {"address2"}
    assert "アドレス1" in caught.value.message_dict["address2"][0]


def test_a_refused_change_changes_nothing() -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    with pytest.raises(ValidationError):
        set_addresses(registrant, ["new@docomo.ne.jp", "bad..dots@docomo.ne.jp"])
    assert registrant.addresses_by_slot() == {1: "mama@docomo.ne.jp", 2: "papa@ezweb.ne.jp", 3: "", 4: ""}


def test_each_new_or_changed_address_gets_one_registration_complete_mail(smtp_sink: Sink) -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    changes = set_addresses(registrant, ["mama@docomo.ne.jp", "papa2@ezweb.ne.jp", "", "grandma@gmail.com"])
    assert [(c.slot, c.email) for c in changes] == [(2, "papa2@ezweb.ne.jp"), (4, "grandma@gmail.com")]
    run_queued_tasks()
    assert smtp_sink.copies() == {"papa2@ezweb.ne.jp": 1, "grandma@gmail.com": 1}
    mail = smtp_sink.to("papa2@ezweb.ne.jp")[0]
    school = registrant.school
    assert mail["From"].addresses[0].addr_spec == school.sender_address
    assert mail["From"].addresses[0].display_name == school.name
    assert "登録完了" in mail["Subject"]
    body = mail.get_body()
    assert body is not None
    assert registrant.child_name in body.get_content()
    assert mail["Content-Transfer-Encoding"] == "base64"


def test_moving_an_address_between_slots_works() -> None:
    registrant = make_registrant(addresses=["mama@docomo.ne.jp", "papa@ezweb.ne.jp"])
    set_addresses(registrant, ["papa@ezweb.ne.jp", "mama@docomo.ne.jp"])
    assert registrant.addresses_by_slot()[1] == "papa@ezweb.ne.jp"
    assert Address.objects.filter(registrant=registrant).count() == 2

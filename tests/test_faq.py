"""S14, the help page: the seed FAQ's questions, with the guardian's real sender domain."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.cast import make_municipality, make_registrant, make_school

pytestmark = pytest.mark.django_db


def _text(response: Any) -> str:
    assert response.status_code == 200
    return str(response.content.decode())


def test_a_logged_in_guardian_sees_their_own_domain_school_sender_and_support_desk() -> None:
    home = make_municipality("iwa", mail_domain="mail.mimamori-iwamizawa.jp", support_phone="0120-000-101")
    make_municipality("taki", mail_domain="mail.mimamori-takikawa.jp", support_phone="0120-000-102")
    registrant = make_registrant(make_school(home, local="midori-sho"))
    client = Client()
    client.force_login(registrant.account)
    page = _text(client.get(reverse("portal:help")))
    assert "midori-sho@mail.mimamori-iwamizawa.jp" in page
    assert "ドメイン指定受信" in page
    assert "mail.mimamori-takikawa.jp" not in page
    assert "0120-000-101" in page
    assert "0120-000-102" not in page
    # The seed's questions, in the guardian's words.
    for words in (
        "登録完了メール",
        "変更メニュー",
        "連絡メールを受信する",
        "登録解除届",
        "市外",
        "市内",
        "アドレス1、2",
    ):
        assert words in page, words


def test_anonymous_visitors_see_every_municipalitys_domain() -> None:
    domains = ["mail.mimamori-iwamizawa.jp", "mail.mimamori-takikawa.jp", "mail.mimamori-yubari.jp"]
    for n, domain in enumerate(domains):
        make_municipality(f"demo{n}", mail_domain=domain)
    page = _text(Client().get(reverse("portal:help")))
    for domain in domains:
        assert domain in page
    assert "ログインすると" in page


def test_the_faq_explains_the_confirmation_link() -> None:
    page = _text(Client().get(reverse("portal:help")))
    assert "受信確認機能" in page
    assert "確認用URL" in page
    assert "「確認しました」" in page
    assert "どれか1つ" in page
    assert "すべての一斉同報メールにURLが付いているわけではありません" in page


def test_a_guardian_whose_city_offers_no_confirmation_links_is_told_so() -> None:
    city = make_municipality("nolinks", confirmation_links_enabled=False)
    client = Client()
    client.force_login(make_registrant(make_school(city)).account)
    assert "確認用URLを付けずに" in _text(client.get(reverse("portal:help")))


def test_the_faq_is_in_english_too() -> None:
    make_municipality(mail_domain="mail.example-city.jp")
    page = _text(
        Client(HTTP_ACCEPT_LANGUAGE="en").get(
            reverse("portal:help"), headers={"Cookie": "django_language=en"}
        )
    )
    assert "Frequently asked questions" in page
    assert "mail.example-city.jp" in page

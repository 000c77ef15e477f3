"""S13/S14 in a real browser: a guardian reads the FAQ on a phone and asks the support desk;
municipality staff answer in the console; the answer reaches the development mailbox."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

GUARDIAN = "10000001"  # 岩見沢市立緑小学校; address 1 sato.haruto-mama@docomo.ne.jp
GUARDIAN_ADDRESS_1 = "sato.haruto-mama@docomo.ne.jp"
MUNICIPALITY_STAFF = "iwamizawa"


def test_guardian_reads_the_faq_asks_and_staff_answer_by_mail(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    subject = "不審者情報メールが届きません（ブラウザ試験）"
    answer = "ドメイン指定受信の設定をご確認ください（ブラウザ試験の回答）。"
    phone = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        # The guardian opens the FAQ from the site's navigation, on a phone.
        page = phone.new_page()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        expect(page.get_by_role("heading", name="変更メニュー")).to_be_visible()
        page.get_by_role("navigation").get_by_role("link", name="よくある質問").click()
        expect(page.get_by_role("heading", name="よくある質問", exact=True)).to_be_visible()
        sender = page.locator(".sender")
        expect(sender).to_contain_text("mail.mimamori-iwamizawa.jp")
        expect(sender).to_contain_text("midori-sho@mail.mimamori-iwamizawa.jp")
        expect(page.locator("#confirmation")).to_contain_text("確認しました")
        expect(page.locator("#support")).to_contain_text("0120-000-101")
        shot(page, "support-1-faq-phone")

        # …and asks the support desk, leaving the reply address empty (answer goes to address 1).
        page.locator("#support").get_by_role("link", name="サポート窓口へのお問い合わせ").click()
        page.get_by_label("お名前").fill("佐藤 花子")
        page.get_by_label("件名").fill(subject)
        page.get_by_label("お問い合わせ内容").fill("昨日の一斉同報メールが届いていないようです。")
        shot(page, "support-2-inquiry-form-phone")
        page.get_by_role("button", name="送信する").click()
        expect(page.locator("body")).to_contain_text("お問い合わせを受け付けました")
        shot(page, "support-3-inquiry-thanks-phone")

        # Municipality staff of 岩見沢市 answer in the console.
        console = staff.new_page()
        log_in(console, demo_system.url + "/console/login/", MUNICIPALITY_STAFF)
        console.get_by_role("navigation").get_by_role("link", name="お問い合わせ").click()
        console.get_by_role("link", name=subject).click()
        expect(console.locator("#inquiry-status")).to_have_attribute("data-status", "open")
        console.get_by_label("回答").fill(answer)
        console.get_by_role("button", name="回答を送信する").click()
        expect(console.locator(".messages")).to_contain_text("回答済み")
        expect(console.locator("#inquiry-status")).to_have_attribute("data-status", "answered")
        shot(console, "support-4-staff-answered")

        # The answer reaches the guardian's address 1 through the development mailbox.
        console.goto(demo_system.url + "/console/mailbox/")
        row = (
            console.get_by_role("row")
            .filter(has_text=GUARDIAN_ADDRESS_1)
            .filter(has_text="お問い合わせへの回答")
        )
        for _ in range(40):  # the worker polls twice a second
            if row.count():
                break
            console.wait_for_timeout(250)
            console.reload()
        expect(row.first).to_be_visible()
        row.first.get_by_role("link").first.click()
        expect(console.locator("body")).to_contain_text(answer)
        shot(console, "support-5-answer-in-mailbox")
    finally:
        phone.close()
        staff.close()

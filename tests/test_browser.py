"""Acceptance in a real browser: the README's run command, then a guardian and a staff member
using the printed URL in Debian's Chromium, at desktop and phone sizes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mimamori.mail.devmailbox import list_mail
from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

GUARDIAN = "10000001"
SCHOOL_STAFF = "midori"


@pytest.mark.parametrize(("size_name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_guardian_changes_slot_2_and_option_and_staff_see_both(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    new_address = f"papa.{size_name}@ezweb.ne.jp"
    guardian = chromium.new_context(viewport=viewport, is_mobile=viewport is PHONE, locale="ja-JP")
    staff = chromium.new_context(viewport=viewport, locale="ja-JP")
    try:
        # The guardian logs in and changes address 2.
        page = guardian.new_page()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        expect(page.get_by_role("heading", name="変更メニュー")).to_be_visible()
        shot(page, f"{size_name}-1-menu")
        page.get_by_role("link", name="メールアドレスの変更").click()
        page.get_by_label("アドレス2").fill(new_address)
        page.get_by_role("button", name="設定").click()
        expect(page.locator(".messages")).to_contain_text("登録完了メール")
        shot(page, f"{size_name}-2-addresses-saved")

        # A wrong address is refused with a reason and changes nothing.
        page.get_by_label("アドレス3").fill("a..b@docomo.ne.jp")
        page.get_by_role("button", name="設定").click()
        expect(page.locator(".errorlist")).to_contain_text("連続")
        shot(page, f"{size_name}-3-address-refused")

        # The 登録完了メール reaches the development mailbox, where staff read it.
        console = staff.new_page()
        log_in(console, demo_system.url + "/console/login/", SCHOOL_STAFF)
        console.goto(demo_system.url + "/console/mailbox/")
        row = console.get_by_role("row").filter(has_text=new_address)
        for _ in range(40):  # the worker polls twice a second
            if row.count():
                break
            console.wait_for_timeout(250)
            console.reload()
        expect(row.first).to_contain_text("登録完了メール")
        row.first.get_by_role("link").first.click()
        expect(console.locator("body")).to_contain_text("アドレス2に登録されました")
        shot(console, f"{size_name}-4-mailbox")

        # The guardian switches broadcast mail off.
        page.goto(demo_system.url + "/portal/options/")
        checkbox = page.get_by_label("連絡メールを受信する")
        expect(checkbox).to_be_checked()
        checkbox.uncheck()
        page.get_by_role("button", name="設定").click()
        expect(page.get_by_label("連絡メールを受信する")).not_to_be_checked()
        shot(page, f"{size_name}-5-option-off")

        # Staff see both changes on the registrant's page.
        console.goto(demo_system.url + "/console/registrants/?q=" + GUARDIAN)
        console.locator("table").get_by_role("link").first.click()
        expect(console.locator("body")).to_contain_text(GUARDIAN)
        expect(console.locator("body")).to_contain_text(new_address)
        expect(console.locator("body")).to_contain_text(
            "保護者が連絡メールを「受信しない」に設定しているため"
        )
        shot(console, f"{size_name}-6-staff-registrant")

        # Switch it back on so the next viewport starts from the demo's state.
        page.goto(demo_system.url + "/portal/options/")
        page.get_by_label("連絡メールを受信する").check()
        page.get_by_role("button", name="設定").click()
    finally:
        guardian.close()
        staff.close()


def test_staff_compose_preview_and_send_a_broadcast(demo_system: RunningSystem, chromium: Any) -> None:
    from playwright.sync_api import expect

    subject = "不審者情報（ブラウザ試験）"
    context = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", SCHOOL_STAFF)
        page.goto(demo_system.url + "/console/broadcasts/new/")
        page.get_by_label("件名").fill(subject)
        page.get_by_label("本文").fill("本日15時ごろ、緑町公園付近で不審な人物が目撃されました。")
        page.get_by_role("button", name="送信前の確認へ").click()

        # The preview shows the exact mail and how many it reaches.
        preview = page.locator(".mail-preview")
        expect(preview).to_contain_text(subject)
        expect(preview).to_contain_text("midori-sho@mail.mimamori-iwamizawa.jp")
        expect(preview).to_contain_text("緑町公園")
        reach = page.locator(".reach-total").inner_text()
        messages = int(re.findall(r"(\d+)", reach)[-1])
        assert messages > 10
        shot(page, "broadcast-1-preview")

        page.get_by_role("button", name="送信する").click()
        expect(page.locator("#status")).to_have_attribute("data-status", "sent", timeout=30_000)
        expect(page.locator('[data-count="sent"]')).to_have_text(str(messages))
        expect(page.locator('[data-count="pending"]')).to_have_text("0")
        shot(page, "broadcast-2-sent")

        # Every mail is in the development mailbox; its page lists the newest 200 (a school of the
        # demo has more addresses than that).
        stored = list_mail(demo_system.output.parent / "mailbox", limit=100_000)
        assert sum(1 for mail in stored if mail.subject == subject) == messages
        page.goto(demo_system.url + "/console/mailbox/")
        rows = page.get_by_role("row").filter(has_text=subject)
        expect(rows).to_have_count(min(messages, 200))
        shot(page, "broadcast-3-mailbox")
    finally:
        context.close()


def test_a_guardian_confirms_on_a_phone_and_staff_see_the_count_and_chart_change(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    subject = "受信確認のお願い（ブラウザ試験）"
    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    phone = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        console = staff.new_page()
        log_in(console, demo_system.url + "/console/login/", SCHOOL_STAFF)
        console.goto(demo_system.url + "/console/broadcasts/new/")
        console.get_by_label("件名").fill(subject)
        console.get_by_label("本文").fill("このメールを読んだら確認ボタンを押してください。")
        console.get_by_label("受信確認を求める").check()
        console.get_by_role("button", name="送信前の確認へ").click()
        console.get_by_role("button", name="送信する").click()
        expect(console.locator("#status")).to_have_attribute("data-status", "sent", timeout=30_000)
        broadcast_url = console.url

        # The statistics page before anyone confirms.
        console.get_by_role("link", name="受信確認の状況").click()
        expect(console.locator('[data-total="confirmed"]')).to_have_text("0")
        chart_before = console.locator("#receipts-chart").inner_html()

        # A guardian's mail, as it arrived in the development mailbox, and the link in it.
        mailbox = staff.new_page()
        mailbox.goto(demo_system.url + "/console/mailbox/")
        mailbox.get_by_role("row").filter(has_text=subject).first.get_by_role("link").first.click()
        link = re.search(r"http://\S+/c/[0-9a-f]+/", mailbox.locator("body").inner_text())
        assert link, "the mail carries a confirmation link"

        page = phone.new_page()
        page.goto(link.group(0))
        expect(page.locator("body")).to_contain_text(subject)
        shot(page, "confirm-1-phone-page")
        page.get_by_role("button", name="確認しました").click()
        expect(page.locator("body")).to_contain_text("ありがとうございました")
        shot(page, "confirm-2-phone-thanks")

        # Staff watching the statistics page see it change by itself.
        expect(console.locator('[data-total="confirmed"]')).not_to_have_text("0", timeout=15_000)
        assert console.locator("#receipts-chart").inner_html() != chart_before
        shot(console, "confirm-3-staff-statistics")
        assert broadcast_url
    finally:
        staff.close()
        phone.close()

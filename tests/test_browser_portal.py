"""Acceptance in Debian's Chromium (issue 14): the guardian portal on a phone and a desktop.

The municipality's name in the header, the warning when slots 1 and 2 are empty (on save and
on the change menu), full-width input explained, a 登録解除届 confirmed and withdrawn, and the
受信履歴 page.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot
from tests.test_browser_csp import sent_broadcast

pytestmark = pytest.mark.browser

GUARDIAN = "10000001"


def test_the_guardian_rereads_a_broadcast_in_the_history(demo_system: RunningSystem, chromium: Any) -> None:
    """First in this module: the demo guardian still has the addresses the school mails."""
    from playwright.sync_api import expect

    sent_broadcast(demo_system)
    context = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        page.get_by_role("link", name="受信履歴").click()
        entry = page.locator("details").filter(has_text="下校時刻変更").first
        for _ in range(40):  # the background worker sends it within seconds
            if entry.count():
                break
            page.wait_for_timeout(250)
            page.reload()
        # The newest is open at once; its whole body is there to read.
        expect(entry.get_by_text("本日は14時に下校します。")).to_be_visible()
        shot(page, "portal-9-history-read-phone")
    finally:
        context.close()


@pytest.mark.parametrize(("viewport", "suffix"), [(PHONE, "phone"), (DESKTOP, "desktop")])
def test_the_guardian_portal_warns_explains_and_confirms(
    demo_system: RunningSystem, chromium: Any, viewport: dict[str, int], suffix: str
) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=viewport, is_mobile=viewport == PHONE, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        expect(page.get_by_role("heading", name="変更メニュー")).to_be_visible()
        expect(page.locator(".brand")).to_contain_text("岩見沢市")
        assert page.title().endswith("| 岩見沢市 児童見守りシステム")

        # Only address 3 kept: saved, but a warning instead of a green 「設定しました」.
        page.get_by_role("link", name="メールアドレスの変更").click()
        page.get_by_label("アドレス1").fill("")
        page.get_by_label("アドレス2").fill("")
        page.get_by_label("アドレス3").fill("grandma@example.jp")
        page.get_by_role("button", name="設定").click()
        expect(page.locator(".message.warning").first).to_contain_text("一斉同報メールは配信されません")
        shot(page, f"portal-1-no-broadcast-slot-{suffix}")
        page.get_by_role("link", name="変更メニューに戻る").click()
        expect(page.locator("[data-warning=no-broadcast-slot]")).to_contain_text("アドレス1、2")
        shot(page, f"portal-2-menu-warning-{suffix}")

        # Full-width input: named, with the half-width form.
        page.get_by_role("link", name="メールアドレスの変更", exact=True).first.click()
        page.get_by_label("アドレス1").fill("ｍａｍａ＠ｄｏｃｏｍｏ．ｎｅ．ｊｐ")
        page.get_by_role("button", name="設定").click()
        expect(page.locator("#id_address1_error")).to_contain_text("「＠」が全角")
        expect(page.locator("#id_address1_error")).to_contain_text("mama@docomo.ne.jp")
        shot(page, f"portal-3-full-width-{suffix}")
        page.get_by_label("アドレス1").fill("mama@docomo.ne.jp")
        page.get_by_role("button", name="設定").click()
        expect(page.locator(".message.success")).to_be_visible()

        # 登録解除届: the form, the confirmation page, waiting, withdrawn.
        page.goto(demo_system.url + "/portal/deregistration/")
        page.get_by_label("転校（市内）").check()
        page.get_by_role("button", name="次へ（内容の確認）").click()
        expect(page.locator(".errorlist").first).to_contain_text("転校先の学校を選んでください")
        shot(page, f"portal-4-destination-required-{suffix}")
        page.get_by_label("転校（市外）").check()
        page.get_by_label("備考（任意）").fill("札幌市へ転居します。")
        page.get_by_role("button", name="次へ（内容の確認）").click()
        expect(page.get_by_role("heading", name="登録解除届の内容確認")).to_be_visible()
        shot(page, f"portal-5-deregistration-confirm-{suffix}")
        page.get_by_role("button", name="この内容で届け出る").click()
        expect(page.locator("body")).to_contain_text("承認待ち")
        shot(page, f"portal-6-deregistration-waiting-{suffix}")
        page.get_by_role("button", name="この届を取り下げる").click()
        expect(page.locator(".messages")).to_contain_text("取り下げました")
        shot(page, f"portal-7-deregistration-withdrawn-{suffix}")

        page.goto(demo_system.url + "/portal/history/")
        expect(page.get_by_role("heading", name="受信履歴")).to_be_visible()
        shot(page, f"portal-8-history-{suffix}")
    finally:
        context.close()

"""The console's 地震 page in a real browser (B10): 岩見沢市's staff start a drill on a phone,
see it listed, its 【訓練】 mail reaches the support desk, and no page breaks the CSP."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser


def test_staff_start_a_drill_and_see_it_on_a_phone(demo_system: RunningSystem, chromium: Any) -> None:
    from playwright.sync_api import expect

    violations: list[str] = []
    for viewport, mobile in ((PHONE, True), (DESKTOP, False)):
        context = chromium.new_context(viewport=viewport, is_mobile=mobile, locale="ja-JP")
        try:
            page = context.new_page()
            page.on(
                "console",
                lambda message: (
                    violations.append(message.text) if "Content Security Policy" in message.text else None
                ),
            )
            log_in(page, demo_system.url + "/console/login/", "iwamizawa")
            assert page.goto(demo_system.url + "/console/quakes/").status == 200
            expect(page.locator("h1")).to_have_text("地震")
            # The demo's 岩見沢市 listens to its JMA city code and holds a minute.
            row = page.locator("table.quake-settings tr", has_text="岩見沢市")
            expect(row).to_contain_text("0121000")
            row.get_by_role("button", name="訓練を開始").click()
            expect(page.locator("body")).to_contain_text("訓練を開始しました")
            drill = page.locator('tr[data-status="drill"]').first
            expect(drill).to_contain_text("訓練")
            expect(drill).to_contain_text("震度5弱")
            shot(page, f"quakes-drill-{'phone' if mobile else 'desktop'}")
            # The settings page opens from the list.
            row = page.locator("table.quake-settings tr", has_text="岩見沢市")
            row.get_by_role("link", name="設定を変更").click()
            expect(page.locator("h1")).to_contain_text("地震の設定")
            expect(page.locator("textarea[name=answers]")).to_have_value(
                "無事です\nけがをしています\n支援が必要です"
            )
        finally:
            context.close()

    # The support desk got the mail guardians would get, marked 【訓練】 (development mailbox).
    centre = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        page = centre.new_page()
        log_in(page, demo_system.url + "/console/login/", "iwamizawa")
        deadline = time.monotonic() + 30
        while True:  # the page is static: open it again until the worker has sent the mail
            page.goto(demo_system.url + "/console/mailbox/")
            if "【訓練】【安否確認】岩見沢市で震度5弱" in page.locator("body").inner_text():
                break
            assert time.monotonic() < deadline, "the drill's mail did not arrive"
            page.wait_for_timeout(500)
        shot(page, "quakes-drill-mailbox")
    finally:
        centre.close()
    assert violations == []

"""Issue 14 in a real browser: the audit log read by a person (desktop and phone), and the
confirmation before a maintenance window mails every address at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.browser import PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

DESKTOP_800 = {"width": 1280, "height": 800}


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP_800, "desktop"), (PHONE, "phone")])
def test_the_audit_log_reads_in_japanese(
    demo_system: RunningSystem, chromium: Any, viewport: dict[str, int], name: str
) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=viewport, is_mobile=name == "phone", locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", "iwamizawa")
        page.goto(demo_system.url + "/console/audit/")
        expect(page.get_by_role("heading", name="操作ログ")).to_be_visible()
        expect(page.locator("p.count")).to_contain_text("件")
        table = page.locator("table.audit-log tbody")
        expect(table).to_contain_text("ログイン")
        expect(table).to_contain_text("管理画面から。")
        assert "login.succeeded" not in table.inner_text()
        assert "{" not in table.inner_text()
        shot(page, f"audit-log-{name}")
    finally:
        context.close()


def test_a_maintenance_window_inside_the_notice_period_asks_first(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=DESKTOP_800, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", "centre")
        page.goto(demo_system.url + "/console/maintenance/new/")
        start = datetime.now() + timedelta(hours=2)
        page.locator("#id_starts_at").fill(start.strftime("%Y-%m-%dT%H:%M"))
        page.locator("#id_ends_at").fill((start + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"))
        page.locator("#id_message").fill("システムの定期メンテナンスのため、ご利用いただけません。")
        page.locator("form.card button[type=submit]").click()
        confirm = page.locator("#maintenance-confirm")
        expect(confirm).to_contain_text("すぐに")
        expect(confirm).to_contain_text("件のアドレス")
        expect(confirm).to_contain_text("岩見沢市")
        shot(page, "maintenance-confirm-desktop")
        page.get_by_role("button", name="入力画面に戻って修正する").click()
        expect(page.locator("#id_message")).to_have_value(
            "システムの定期メンテナンスのため、ご利用いただけません。"
        )
        page.goto(demo_system.url + "/console/maintenance/")
        expect(page.locator("main")).not_to_contain_text("システムの定期メンテナンスのため")
    finally:
        context.close()

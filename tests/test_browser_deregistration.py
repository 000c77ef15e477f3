"""Acceptance in Debian's Chromium: a guardian files a 登録解除届 on a phone, school staff
approve it in the console, and the guardian's login stops working."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

GUARDIAN = "10000001"
SCHOOL_STAFF = "midori"


def test_guardian_files_a_deregistration_staff_approve_and_the_login_stops(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    guardian = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        page = guardian.new_page()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        page.get_by_role("link", name="登録解除届").click()
        expect(page.get_by_role("heading", name="登録解除届")).to_be_visible()
        page.get_by_label("転校（市外）").check()
        page.get_by_label("解除日").fill("2025-03-31")
        page.get_by_label("備考（任意）").fill("札幌市へ転居します。")
        shot(page, "deregistration-1-form-phone")
        page.get_by_role("button", name="次へ（内容の確認）").click()
        expect(page.get_by_role("heading", name="登録解除届の内容確認")).to_be_visible()
        expect(page.locator("body")).to_contain_text("札幌市へ転居します。")
        shot(page, "deregistration-1b-confirm-phone")
        page.get_by_role("button", name="この内容で届け出る").click()
        expect(page.locator(".messages")).to_contain_text("学校に送りました")
        expect(page.locator("body")).to_contain_text("承認待ち")
        shot(page, "deregistration-2-waiting-phone")

        console = staff.new_page()
        log_in(console, demo_system.url + "/console/login/", SCHOOL_STAFF)
        console.get_by_role("link", name="登録解除届").first.click()
        row = console.get_by_role("row").filter(has_text="佐藤 陽翔")
        expect(row).to_contain_text("承認待ち")
        row.get_by_role("link", name="佐藤 陽翔").click()
        expect(console.locator("body")).to_contain_text("札幌市へ転居します。")
        console.get_by_role("button", name="承認して登録を解除").click()
        expect(console.locator(".messages")).to_contain_text("登録を解除しました")
        shot(console, "deregistration-3-approved")

        # The guardian's open session ends, and a new login is refused.
        page.goto(demo_system.url + "/portal/")
        expect(page.get_by_label("ログインID")).to_be_visible()
        log_in(page, demo_system.url + "/portal/login/", GUARDIAN)
        expect(page.get_by_role("heading", name="変更メニュー")).to_have_count(0)
        expect(page.get_by_label("ログインID")).to_be_visible()
        shot(page, "deregistration-4-login-refused-phone")
    finally:
        guardian.close()
        staff.close()

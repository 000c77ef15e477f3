"""P6 and P7 in a real browser: a school head starts from a template on a phone and on a desktop,
schedules the draft for later, sees the time in the list, and cancels it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser


@pytest.mark.parametrize(("viewport", "size"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_template_then_schedule_then_cancel(
    demo_system: RunningSystem, chromium: Any, viewport: dict[str, int], size: str
) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=viewport, is_mobile=size == "phone", locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", "midori")
        page.goto(demo_system.url + "/console/broadcasts/")
        page.get_by_role("link", name="テンプレートから作成").click()
        expect(page.get_by_role("heading", name="テンプレートから作成")).to_be_visible()
        for name in ("不審者情報", "休校", "下校時刻変更", "地震発生時の安否確認"):
            expect(page.locator("table.alert-templates")).to_contain_text(name)
        shot(page, f"schedule-1-templates-{size}")
        page.get_by_role("row", name="下校時刻変更").get_by_role("link", name="使う").click()
        page.get_by_label("いつ").fill("明日")
        page.get_by_label("どこで").fill("正門")
        page.get_by_label("何が").fill("教職員研修")
        page.get_by_label("保護者へのお願い").fill("お迎えをお願いします。")
        shot(page, f"schedule-2-fill-in-{size}")
        page.get_by_role("button", name="宛先の選択へ進む").click()
        assert "/console/broadcasts/new/" in page.url
        assert "subject=" in page.url

        # A draft (composed as the compose page stands), scheduled for tomorrow.
        subject = f"下校時刻変更（予約の試験 {size}）"
        page.get_by_label("件名").fill(subject)
        page.get_by_label("本文").fill("明日は教職員研修のため、下校時刻を変更します。")
        page.get_by_role("button", name="送信前の確認へ").click()
        at = (datetime.now() + timedelta(days=1)).replace(second=0, microsecond=0)
        page.get_by_label("日時を指定して送信").fill(at.strftime("%Y-%m-%dT%H:%M"))
        page.get_by_role("button", name="日時を指定して送信").click()
        expect(page.locator(".schedule")).to_contain_text(at.strftime("%Y-%m-%d %H:%M"))
        expect(page.locator("#status")).to_contain_text("送信予約")
        shot(page, f"schedule-3-scheduled-{size}")

        page.goto(demo_system.url + "/console/broadcasts/")
        expect(page.get_by_role("row", name=subject)).to_contain_text(at.strftime("%Y-%m-%d %H:%M"))
        shot(page, f"schedule-4-list-{size}")
        page.get_by_role("link", name=subject).click()
        page.get_by_role("button", name="予約を取り消す").click()
        expect(page.locator("#status")).to_contain_text("取り消し")
        shot(page, f"schedule-5-cancelled-{size}")
    finally:
        context.close()

"""Issue 14, in a real browser: the broadcast page and the statistics count up without a
reload, the console is usable on a phone, and each site has its own Japanese error pages."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser import PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

SCHOOL_STAFF = "midori"
CITY_STAFF = "iwamizawa"
SIZES = [("desktop", {"width": 1280, "height": 800}), ("phone", PHONE)]


def _console(
    chromium: Any, system: RunningSystem, viewport: dict[str, int], login: str = SCHOOL_STAFF
) -> Any:
    context = chromium.new_context(viewport=viewport, is_mobile=viewport is PHONE, locale="ja-JP")
    page = context.new_page()
    log_in(page, system.url + "/console/login/", login)
    return context, page


@pytest.mark.parametrize(("size_name", "viewport"), SIZES)
def test_the_broadcast_page_counts_up_without_a_reload(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    context, page = _console(chromium, demo_system, viewport)
    try:
        page.goto(demo_system.url + "/console/broadcasts/new/")
        page.get_by_label("件名").fill(f"下校時刻変更（{size_name}）")
        page.get_by_label("本文").fill("本日は14時に下校します。")
        page.get_by_role("button", name="プレビュー").click()
        page.get_by_role("button", name="送信する").click()
        expect(page.locator("#status")).to_have_attribute("data-status", "sending")
        shot(page, f"live-{size_name}-1-sending")
        # Every change of a count in this document is reported to the test; a reload would
        # start a new document without the observer (the script reloads once sending ends).
        changes: list[str] = []
        page.expose_function("countChanged", lambda counts: changes.append(counts))
        page.evaluate(
            """() => new MutationObserver(() => window.countChanged(
                 Array.from(document.querySelectorAll("[data-count]"), cell => cell.textContent).join()
               )).observe(document.querySelector("table.progress"),
                          {subtree: true, childList: true, characterData: true})"""
        )
        expect(page.locator("#status")).to_have_attribute("data-status", "sent", timeout=60_000)
        assert changes, "the counts did not change before the page was reloaded"
        expect(page.locator('[data-count="pending"]')).to_have_text("0")
        assert page.locator('[data-count="registrants"]').inner_text() != "0"
        shot(page, f"live-{size_name}-2-sent")
    finally:
        context.close()

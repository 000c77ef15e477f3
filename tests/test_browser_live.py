"""Issue 14, in a real browser: the broadcast page and the statistics count up without a
reload, the console is usable on a phone, and each site has its own Japanese error pages.
Issue 17: a fresh demo's past broadcast has statistics to show."""

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


def test_a_past_broadcast_of_the_fresh_demo_shows_its_curve_and_classes(
    demo_system: RunningSystem, chromium: Any
) -> None:
    """Staff open yesterday's 不審者情報 as they would: the list, the broadcast, its statistics."""
    from playwright.sync_api import expect

    context, page = _console(chromium, demo_system, SIZES[0][1])
    try:
        page.goto(demo_system.url + "/console/broadcasts/")
        page.get_by_role("link", name="不審者の目撃について").click()
        page.get_by_role("link", name="受信確認の状況").click()
        expect(page.get_by_role("heading", name="受信確認の状況")).to_be_visible()
        confirmed = int(page.locator('[data-total="confirmed"]').inner_text())
        registrants = int(page.locator('[data-total="registrants"]').inner_text())
        assert 0 < confirmed < registrants
        # The curve climbs: its line spans the chart's width and a good part of its height.
        line = page.locator("#receipts-chart polyline.confirmed-line")
        expect(line).to_be_visible()
        points = (line.get_attribute("points") or "").split()
        assert len(points) > 10, points
        box = line.bounding_box()
        assert box is not None
        assert box["width"] > 200, box
        assert box["height"] > 50, box
        # Every class of 緑小学校 (three a grade) with its registrants.
        classes = page.locator("table.receipt-breakdown tr.class")
        expect(classes).to_have_count(18)
        for row in classes.all():
            assert int(row.locator('[data-col="registrants"]').inner_text()) > 10
        shot(page, "demo-past-broadcast-statistics")
    finally:
        context.close()


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
        page.get_by_role("button", name="送信前の確認へ").click()
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


@pytest.mark.parametrize(("size_name", "viewport"), SIZES)
def test_the_console_on_a_phone_and_the_error_pages(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    context, page = _console(chromium, demo_system, viewport, CITY_STAFF)
    try:
        page.goto(demo_system.url + "/console/schools/")
        name = page.get_by_role("link", name="岩見沢市立緑小学校")
        expect(name).to_be_visible()
        # A school's name stays on one line (it wrapped one character a line in a narrow column).
        box = name.bounding_box()
        assert box is not None
        assert box["height"] < 40, box
        header = page.locator(".site-header").bounding_box()
        assert header is not None
        if viewport is PHONE:
            assert header["height"] < 120, header  # the menu took a third of the screen
            page.get_by_text("メニュー", exact=True).click()
            expect(page.get_by_role("link", name="一斉配信")).to_be_visible()
            shot(page, f"phone-console-{size_name}-menu-open")
            page.get_by_text("メニュー", exact=True).click()
        shot(page, f"phone-console-{size_name}-schools")
        page.goto(demo_system.url + "/console/registrants/")
        shot(page, f"phone-console-{size_name}-registrants")
        page.goto(demo_system.url + "/console/broadcasts/")
        shot(page, f"phone-console-{size_name}-broadcasts")

        response = page.goto(demo_system.url + "/console/no-such-page/")
        assert response is not None
        assert response.status == 404
        expect(page.get_by_role("heading", name="ページが見つかりません")).to_be_visible()
        shot(page, f"error-console-{size_name}-404")
        portal = context.new_page()
        response = portal.goto(demo_system.url + "/portal/no-such-page/")
        assert response is not None
        assert response.status == 404
        expect(portal.get_by_role("heading", name="ページが見つかりません")).to_be_visible()
        shot(portal, f"error-portal-{size_name}-404")
    finally:
        context.close()

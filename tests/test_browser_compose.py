"""Compose in a real browser (issue 14), desktop 1280×800 and phone 390×844: a class ticked in
the picker, the live 「N 家庭・M 通」 as the choice changes, the confirmation step with the
mail a guardian gets, and send."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser import PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

DESKTOP_800 = {"width": 1280, "height": 800}


@pytest.mark.parametrize(("size_name", "viewport"), [("desktop", DESKTOP_800), ("phone", PHONE)])
def test_staff_pick_a_class_watch_the_count_confirm_and_send(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    subject = f"不審者情報（{size_name}）"
    context = chromium.new_context(viewport=viewport, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", "midori")
        page.goto(demo_system.url + "/console/broadcasts/new/")
        live = page.locator("[data-reach]")
        expect(live).to_contain_text("家庭・")  # the whole school, counted as the page opens
        whole = _count(live.inner_text())

        # Tick 3年1組: the count follows the choice without a reload.
        row = page.locator(".grade-row").filter(has_text="3年")
        before = live.inner_text()
        row.get_by_label(re.compile(r"^\s*1組（\d+）\s*$")).check()
        expect(live).not_to_have_text(before, timeout=5_000)
        households, mails = _count(live.inner_text())
        assert 0 < households < whole[0]
        shot(page, f"compose-{size_name}-1-picker")

        page.get_by_label("件名").fill(subject)
        page.get_by_label("本文").fill("本日15時ごろ、緑町公園付近で不審な人物が目撃されました。")
        page.get_by_label("受信確認を求める").check()
        page.get_by_role("button", name="送信前の確認へ").click()

        # The confirmation step: the mail as a guardian gets it, the same count, the lane.
        expect(page.locator(".reach-total")).to_have_text(f"{households} 家庭・{mails} 通")
        mail = page.locator(".mail-preview")
        expect(mail).to_contain_text(subject)
        expect(mail).to_contain_text("3年1組")
        expect(mail).to_contain_text("■受信確認のお願い")
        expect(mail).to_contain_text("/c/xxxxxxxxxxxxxxxx/")
        shot(page, f"compose-{size_name}-2-confirm")

        page.get_by_role("button", name=f"送信する（{households} 家庭・{mails} 通）").click()
        expect(page.locator("#status")).to_have_attribute("data-status", "sent", timeout=30_000)
        expect(page.locator('[data-count="sent"]')).to_have_text(str(mails))
        shot(page, f"compose-{size_name}-3-sent")
    finally:
        context.close()


def _count(text: str) -> tuple[int, int]:
    found = re.search(r"(\d+) 家庭・(\d+) 通", text)
    assert found, text
    return int(found.group(1)), int(found.group(2))


@pytest.mark.parametrize(("size_name", "viewport"), [("desktop", DESKTOP_800), ("phone", PHONE)])
def test_staff_pick_classes_of_two_grades_and_the_confirmation_names_them(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    """3年2組 and 5年1組 together: once refused (grades × classes), now exactly those two."""
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=viewport, locale="ja-JP")
    try:
        page = context.new_page()
        log_in(page, demo_system.url + "/console/login/", "midori")
        page.goto(demo_system.url + "/console/broadcasts/new/")
        live = page.locator("[data-reach]")
        expect(live).to_contain_text("家庭・")
        chosen, names, counts = 0, [], []
        # The last class of grade 3 and the first of grade 5 (the demo's classes are random).
        for grade, which in (("3年", -1), ("5年", 0)):
            labels = page.locator(".grade-row").filter(has_text=grade).locator("label.choice:not(.whole)")
            label = labels.nth(which if which >= 0 else labels.count() - 1)
            words = label.inner_text().strip()
            found = re.fullmatch(r"(\S+組)（(\d+)）", words)
            assert found, words
            names.append(grade + found.group(1))
            chosen += int(found.group(2))
            before = live.inner_text()
            label.locator("input").check()
            expect(live).not_to_have_text(before, timeout=5_000)
            counts.append(_count(live.inner_text())[0])
        # The picker counts children who receive broadcasts, the live count those with an
        # address that gets them: the second class adds to the first, never past the labels.
        assert 0 < counts[0] < counts[1] <= chosen
        shot(page, f"compose-{size_name}-groups-1-picker")

        page.get_by_label("件名").fill(f"下校時刻変更（{size_name}）")
        page.get_by_label("本文").fill("本日は14時に下校します。")
        page.get_by_role("button", name="送信前の確認へ").click()
        expect(page.locator(".scope-groups")).to_have_text("、".join(names))
        expect(page.locator(".reach-total")).to_contain_text(f"{counts[1]} 家庭・")
        shot(page, f"compose-{size_name}-groups-2-confirm")
    finally:
        context.close()

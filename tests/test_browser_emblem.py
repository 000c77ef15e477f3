"""Acceptance in Debian's Chromium (issue 14): the municipality's emblem, uploaded by the city's
staff on the console, in the console's header and in the guardian portal's header on a phone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser


def _emblem_file(tmp_path: Path) -> Path:
    """A 400×400 emblem-like picture (a red ring and a bar on transparency), as a city might upload."""
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 380, 380), outline=(180, 20, 40, 255), width=40)
    draw.rectangle((170, 80, 230, 320), fill=(20, 60, 160, 255))
    path = tmp_path / "shisho.png"
    image.save(path)
    return path


def _image_is_drawn(page: Any, selector: str) -> bool:
    """The image has loaded and decoded (waits for it, 10 s at most)."""
    page.wait_for_function(
        "sel => { const i = document.querySelector(sel); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
        timeout=10_000,
    )
    return True


def test_city_staff_upload_the_emblem_and_the_guardian_sees_it_on_a_phone(
    demo_system: RunningSystem, chromium: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    console = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        page = console.new_page()
        log_in(page, demo_system.url + "/console/login/", "iwamizawa")
        expect(page).to_have_title(re.compile(r"\| 岩見沢市 見守りメール 管理画面$"))
        page.goto(demo_system.url + "/console/municipalities/")
        page.get_by_role("link", name="市章").first.click()
        expect(page.get_by_role("heading", name="市章: 岩見沢市")).to_be_visible()
        page.get_by_label("市章の画像（PNG または JPEG、200 KB まで）").set_input_files(
            str(_emblem_file(tmp_path))
        )
        page.get_by_role("button", name="アップロード").click()
        expect(page.locator(".message.success")).to_contain_text("市章を保存しました")
        expect(page.locator("img.brand-emblem")).to_have_attribute("alt", "岩見沢市")
        assert _image_is_drawn(page, "img.brand-emblem")
        assert _image_is_drawn(page, "img.emblem-preview")
        shot(page, "emblem-1-console-uploaded-desktop")
    finally:
        console.close()

    phone = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        page = phone.new_page()
        log_in(page, demo_system.url + "/portal/login/", "10000001")
        expect(page.get_by_role("heading", name="変更メニュー")).to_be_visible()
        emblem = page.locator(".brand img.brand-emblem")
        expect(emblem).to_have_attribute("alt", "岩見沢市")
        assert _image_is_drawn(page, ".brand img.brand-emblem")
        box = emblem.bounding_box()
        assert box is not None
        assert box["height"] <= 48  # text height, not a 128-pixel banner on a phone
        expect(page.locator(".brand")).to_contain_text("岩見沢市")
        shot(page, "emblem-2-portal-header-phone")
    finally:
        phone.close()

    # The school staff's console header shows their city's emblem too (on a phone).
    school = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        page = school.new_page()
        log_in(page, demo_system.url + "/console/login/", "midori")
        expect(page).to_have_title(re.compile(r"\| 岩見沢市 見守りメール 管理画面$"))
        assert _image_is_drawn(page, "img.brand-emblem")
        shot(page, "emblem-3-console-school-phone")
    finally:
        school.close()

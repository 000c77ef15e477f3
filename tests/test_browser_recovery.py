"""P11 in a real browser on a phone: a guardian who forgot the password asks for a reset on the
login page, opens the link from the mail (the development mailbox) and logs in anew."""

from __future__ import annotations

import mailbox
import re
import time
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest

from tests.browser import PHONE, RunningSystem, shot

pytestmark = pytest.mark.browser

GUARDIAN = "10000001"  # 岩見沢市立緑小学校; address 1 sato.haruto-mama@docomo.ne.jp
GUARDIAN_ADDRESS_1 = "sato.haruto-mama@docomo.ne.jp"
NEW_PASSWORD = "haruto-no-Mama-2026"


def _reset_link(data_dir: Path, deadline: float) -> str:
    """The link of the reset mail to address 1, once the worker has sent it."""
    while time.monotonic() < deadline:
        box = mailbox.Maildir(data_dir / "mailbox", create=False)
        for message in box:
            subject = str(make_header(decode_header(message["Subject"] or "")))
            if GUARDIAN_ADDRESS_1 in (message["To"] or "") and "パスワード再設定" in subject:
                payload = message.get_payload(decode=True)
                text = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
                found = re.search(r"http://\S+/portal/password-reset/[A-Za-z0-9_-]+/", text)
                assert found, text
                return found.group(0)
        time.sleep(0.25)
    raise AssertionError("no password reset mail reached the development mailbox")


def test_a_guardian_resets_a_forgotten_password_on_a_phone(demo_system: RunningSystem, chromium: Any) -> None:
    from playwright.sync_api import expect

    phone = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        page = phone.new_page()
        page.goto(demo_system.url + "/portal/login/")
        page.get_by_role("link", name="パスワードを忘れた方").click()
        expect(page.get_by_role("heading", name="パスワードを忘れた方")).to_be_visible()
        page.get_by_label("ログインID").fill(GUARDIAN)
        page.get_by_label("登録済みのメールアドレス").fill(GUARDIAN_ADDRESS_1)
        shot(page, "recovery-1-request-phone")
        page.get_by_role("button", name="送信").click()
        expect(page.locator("body")).to_contain_text("パスワード再設定用のURLを記載したメールを送信しました")
        shot(page, "recovery-2-sent-phone")

        link = _reset_link(demo_system.output.parent, deadline=time.monotonic() + 30)
        page.goto(link)
        expect(page.get_by_role("heading", name="新しいパスワードの設定")).to_be_visible()
        page.get_by_label("新しいパスワード", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("新しいパスワード（確認のためもう一度）").fill(NEW_PASSWORD)
        shot(page, "recovery-3-new-password-phone")
        page.get_by_role("button", name="パスワードを設定する").click()
        expect(page.locator("body")).to_contain_text("新しいパスワードを設定しました")

        page.get_by_label("ログインID").fill(GUARDIAN)
        page.get_by_label("パスワード", exact=True).fill(NEW_PASSWORD)
        page.get_by_role("button", name="ログイン").click()
        expect(page.get_by_role("heading", name="変更メニュー")).to_be_visible()

        # The link was for one use.
        page.goto(link)
        expect(page.get_by_role("heading", name="このURLは使用できません")).to_be_visible()
        shot(page, "recovery-4-link-used-phone")
    finally:
        phone.close()

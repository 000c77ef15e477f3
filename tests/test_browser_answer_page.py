"""Browser test (B1): on a phone, a guardian opens the 安否確認 link of a real mail sent to an
address two siblings share, answers for both children, sees the answers and changes one; on a
desktop, the school's tally page, open all the while, follows each answer without a reload.

The system is `mimamori run --demo` (tests/browser.py); the broadcast is made through the API
as an integration would, to two children enrolled through the API at one address. The receipts
are also read from the demo's own database file."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

SCHOOL_STAFF = "midori"
FAMILY = "kyodai-anpi@docomo.ne.jp"
SUBJECT = "地震発生 安否確認（ブラウザ試験）"
SAFETY = ["無事です", "けがをしています", "支援が必要です"]


def _api(system: RunningSystem, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310
        f"{system.url}/api/v1{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def _demo_env(system: RunningSystem) -> dict[str, str]:
    return {**os.environ, "MIMAMORI_DATA_DIR": str(system.output.parent), "DATABASE_URL": ""}


def _database(system: RunningSystem) -> sqlite3.Connection:
    return sqlite3.connect(system.output.parent / "mimamori.sqlite3")


def answer_broadcast_to_siblings(system: RunningSystem) -> tuple[int, int, int]:
    """Two children of 緑小学校 at one address, and a 安否確認 to their classes: (broadcast,
    elder, younger)."""
    token = subprocess.run(
        [sys.executable, "-m", "mimamori", "apitoken", SCHOOL_STAFF],
        env=_demo_env(system),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    school = _api(system, token, "GET", "/schools")[0]["id"]
    children = [
        _api(
            system,
            token,
            "POST",
            "/registrants",
            {"school": school, "child_name": name, "grade": grade, "class_name": "1", "addresses": [FAMILY]},
        )["id"]
        for name, grade in (("安否 一郎", 5), ("安否 花子", 2))
    ]
    draft = _api(
        system,
        token,
        "POST",
        "/broadcasts",
        {
            "scope": {
                "schools": [school],
                "groups": [{"grade": 5, "class_name": "1"}, {"grade": 2, "class_name": "1"}],
            },
            "subject": SUBJECT,
            "body": "震度5弱の地震がありました。お子様の様子をお知らせください。",
            "urgent": True,
            "request_confirmation": True,
            "answers": SAFETY,
        },
    )
    assert draft["answers"] == SAFETY
    _api(system, token, "POST", f"/broadcasts/{draft['id']}/send")
    return int(draft["id"]), children[0], children[1]


def recorded(system: RunningSystem, broadcast: int) -> dict[int, int]:
    with _database(system) as database:
        return dict(
            database.execute(
                "SELECT registrant_id, answer FROM receipts_receipt WHERE broadcast_id = ?", [broadcast]
            ).fetchall()
        )


def test_a_guardian_answers_for_two_siblings_on_a_phone_and_changes_one(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    broadcast, elder, younger = answer_broadcast_to_siblings(demo_system)
    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    phone = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        # The mail as it arrived in the development mailbox, and the link in it.
        mailbox = staff.new_page()
        log_in(mailbox, demo_system.url + "/console/login/", SCHOOL_STAFF)
        row = mailbox.get_by_role("row").filter(has_text=SUBJECT).filter(has_text=FAMILY)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the workers send it within seconds
            mailbox.goto(demo_system.url + "/console/mailbox/")
            if row.count():
                break
            time.sleep(1)
        expect(row).to_have_count(1)
        row.get_by_role("link").first.click()
        mail = mailbox.locator("body").inner_text()
        assert "■安否確認（回答のお願い）" in mail
        link = re.search(r"http://\S+/c/[0-9a-f]+/", mail)
        assert link, "the mail carries the answer link"

        # The school watches the tally (polled by receipts.js) while the guardian answers.
        tally = staff.new_page()
        tally.goto(f"{demo_system.url}/console/broadcasts/{broadcast}/receipts/")
        expect(tally.locator('[data-total="a0"]')).to_have_text("0")
        unanswered = int(
            tally.locator('[data-total="unanswered"]').inner_text()
        )  # the classes' other families too
        tally.evaluate("() => { window.sameDocument = true; }")

        page = phone.new_page()
        page.goto(link.group(0))
        expect(page.locator("body")).to_contain_text(SUBJECT)
        elder_choices = page.get_by_role("group", name="緑小学校 5年1組 安否 一郎 さん")
        younger_choices = page.get_by_role("group", name="緑小学校 2年1組 安否 花子 さん")
        expect(elder_choices).to_be_visible()
        expect(younger_choices).to_be_visible()
        assert recorded(demo_system, broadcast) == {}  # opening the page records nothing
        # Nothing sticks out of a phone's screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, "answer-1-phone-form")

        elder_choices.get_by_label("無事です").check()
        younger_choices.get_by_label("けがをしています").check()
        page.get_by_role("button", name="回答する").click()
        expect(page.locator("h1")).to_have_text("回答ありがとうございました")
        answers = page.locator(".answers-recorded")
        expect(answers).to_contain_text("安否 一郎 さん")
        expect(answers.locator("dd")).to_have_text(["けがをしています", "無事です"])  # the mail's order
        assert recorded(demo_system, broadcast) == {elder: 0, younger: 1}
        shot(page, "answer-2-phone-done")
        expect(tally.locator('[data-total="a0"]')).to_have_text("1", timeout=15_000)
        expect(tally.locator('[data-total="a1"]')).to_have_text("1")
        expect(tally.locator('[data-total="unanswered"]')).to_have_text(str(unanswered - 2))

        # Later the younger one turns out to need help: the answer changes.
        page.get_by_role("group", name="緑小学校 2年1組 安否 花子 さん").get_by_label(
            "支援が必要です"
        ).check()
        page.get_by_role("button", name="回答を変更する").click()
        expect(page.locator(".answers-recorded dd")).to_have_text(["支援が必要です", "無事です"])
        assert recorded(demo_system, broadcast) == {elder: 0, younger: 2}
        shot(page, "answer-3-phone-changed")
        expect(tally.locator('[data-total="a1"]')).to_have_text("0", timeout=15_000)
        expect(tally.locator('[data-total="a2"]')).to_have_text("1")
        assert tally.evaluate("() => window.sameDocument === true"), "the tally moved without a reload"
        shot(tally, "answer-4-staff-tally")
    finally:
        staff.close()
        phone.close()

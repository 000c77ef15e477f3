"""Answers (B1) on the staff side, in a real browser on the demo system: compose with the
安否確認 shortcut (filled in place by compose.js; Enter in the subject still means 「送信前の確認へ」),
send, and watch the tally per answer move without a reload while answers come in.

Answers are recorded by the verb behind the guardian's page (receipts.answering.record_answers)
in a separate process against the running system's database, with a token of a mail it sent."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser

SCHOOL_STAFF = "midori"

# Answer for the first child of the first mail of the broadcast: 支援が必要です (index 2).
ANSWER = """
from mimamori.broadcasts.models import Delivery, Recipient
from mimamori.receipts.answering import record_answers
mails = Delivery.objects.filter(broadcast_id={broadcast_id}, confirmation_token__isnull=False)
delivery = mails.order_by("pk")[{n}]
registrant = Recipient.objects.filter(delivery=delivery).values_list("registrant_id", flat=True)[0]
assert record_answers(delivery.confirmation_token, {{registrant: 2}}) is not None
"""


def answer_in_the_system(system: RunningSystem, broadcast_id: int, n: int) -> None:
    env = {**os.environ, "MIMAMORI_DATA_DIR": str(system.output.parent), "DATABASE_URL": ""}
    env.pop("EMAIL_URL", None)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "shell",
            "--settings=mimamori.settings",
            "-c",
            ANSWER.format(broadcast_id=broadcast_id, n=n),
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.parametrize(("size_name", "viewport"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_staff_compose_a_safety_check_and_watch_the_tally_move(
    demo_system: RunningSystem, chromium: Any, size_name: str, viewport: dict[str, int]
) -> None:
    from playwright.sync_api import expect

    context = chromium.new_context(viewport=viewport, is_mobile=viewport is PHONE, locale="ja-JP")
    page = context.new_page()
    try:
        log_in(page, demo_system.url + "/console/login/", SCHOOL_STAFF)
        # Enter in the subject submits the form as 「送信前の確認へ」, not the shortcut.
        page.goto(demo_system.url + "/console/broadcasts/new/")
        page.get_by_label("件名").fill(f"お知らせ（{size_name}）")
        page.get_by_label("本文").fill("本日は通常どおりです。")
        page.get_by_label("件名").press("Enter")
        expect(page.get_by_role("heading", name="送信前の確認")).to_be_visible()
        expect(page.locator("ol.answer-list")).to_have_count(0)

        page.goto(demo_system.url + "/console/broadcasts/new/")
        page.get_by_label("件名").fill(f"【安否確認】地震（{size_name}）")
        page.get_by_label("本文").fill("お子様の安否を回答してください。")
        page.get_by_role("button", name="安否確認（無事／けが／支援が必要）").click()
        expect(page.get_by_label("選択肢 1")).to_have_value("無事です")
        expect(page.get_by_label("選択肢 3")).to_have_value("支援が必要です")
        assert "/broadcasts/new/" in page.url  # filled in place, nothing posted
        shot(page, f"answers-{size_name}-1-compose")
        page.get_by_role("button", name="送信前の確認へ").last.click()
        expect(page.locator("ol.answer-list li")).to_have_text(
            ["無事です", "けがをしています", "支援が必要です"]
        )
        shot(page, f"answers-{size_name}-2-check")
        page.get_by_role("button", name="送信する").click()
        expect(page.locator("#status")).to_have_attribute("data-status", "sent", timeout=60_000)
        broadcast_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

        page.get_by_role("link", name="回答と受信確認の状況").click()
        expect(page.locator('[data-total="a2"]')).to_have_text("0")
        unanswered = int(page.locator('[data-total="unanswered"]').inner_text())
        assert unanswered > 0
        page.evaluate("() => { window.sameDocument = true; }")
        answer_in_the_system(demo_system, broadcast_id, 0)
        answer_in_the_system(demo_system, broadcast_id, 1)
        expect(page.locator('[data-total="a2"]')).to_have_text("2", timeout=15_000)
        expect(page.locator('[data-total="unanswered"]')).to_have_text(str(unanswered - 2))
        assert page.evaluate("() => window.sameDocument === true"), "updated without a reload"
        shot(page, f"answers-{size_name}-3-tally")

        page.get_by_role("link", name="一覧を見る").last.click()  # 未回答
        expect(page.get_by_role("heading", name="未回答の登録者")).to_be_visible()
        page.go_back()
        page.get_by_role("link", name="回答を締め切る").click()
        expect(page.get_by_role("heading", name="回答を締め切りますか？")).to_be_visible()
        page.get_by_role("button", name="回答を締め切る").click()
        expect(page.locator(".answers-closed")).to_be_visible()
        shot(page, f"answers-{size_name}-4-closed")
    finally:
        context.close()

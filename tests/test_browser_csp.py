"""The Content-Security-Policy in a real browser: the pages with script (the broadcast's live
counters, the statistics, Swagger UI) work under it, and Chromium reports no violation on any
page a guardian or staff member opens (issue 13)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from tests.browser import DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser


def _api(system: RunningSystem, token: str, method: str, path: str, body: object = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (the system on loopback)
        f"{system.url}/api/v1{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def sent_broadcast(system: RunningSystem) -> int:
    """A broadcast with confirmation to 緑小学校, sent through the API as an integration would."""
    token = subprocess.run(
        [sys.executable, "-m", "mimamori", "apitoken", "midori"],
        env={**os.environ, "MIMAMORI_DATA_DIR": str(system.output.parent), "DATABASE_URL": ""},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    school = _api(system, token, "GET", "/schools")[0]["id"]
    draft = _api(
        system,
        token,
        "POST",
        "/broadcasts",
        {
            "scope": {"schools": [school]},
            "subject": "下校時刻変更",
            "body": "本日は14時に下校します。",
            "request_confirmation": True,
        },
    )
    _api(system, token, "POST", f"/broadcasts/{draft['id']}/send")
    return int(draft["id"])


def test_no_page_breaks_the_content_security_policy(demo_system: RunningSystem, chromium: Any) -> None:
    from playwright.sync_api import expect

    broadcast = sent_broadcast(demo_system)
    violations: list[str] = []

    def watch(page: Any) -> Any:
        page.on(
            "console",
            lambda message: (
                violations.append(f"{page.url}: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    guardian = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP")
    try:
        console = watch(staff.new_page())
        log_in(console, demo_system.url + "/console/login/", "midori")
        # The broadcast's page counts live with its static script until it reloads as sent.
        console.goto(f"{demo_system.url}/console/broadcasts/{broadcast}/")
        expect(console.locator("body")).to_contain_text("配信済み", timeout=30_000)
        for path in (
            "/console/",
            f"/console/broadcasts/{broadcast}/receipts/",
            f"/console/broadcasts/{broadcast}/unconfirmed/",
            "/console/broadcasts/new/",
            "/console/registrants/",
            "/console/mailbox/",
            "/console/lockouts/",
        ):
            assert console.goto(demo_system.url + path).status == 200, path
        console.goto(f"{demo_system.url}/console/broadcasts/{broadcast}/receipts/")
        expect(console.locator("svg.receipts-chart")).to_be_visible()
        shot(console, "csp-receipts")
        # Swagger UI from the server's own files draws the operations.
        console.goto(demo_system.url + "/api/v1/docs")
        expect(console.get_by_text("/api/v1/broadcasts", exact=True).first).to_be_visible(timeout=15_000)
        shot(console, "csp-api-docs")

        phone = watch(guardian.new_page())
        for path in ("/portal/login/", "/portal/password-reset/", "/portal/first-login/", "/portal/help/"):
            assert phone.goto(demo_system.url + path).status == 200, path
        log_in(phone, demo_system.url + "/portal/login/", "10000001")
        for path in (
            "/portal/",
            "/portal/addresses/",
            "/portal/options/",
            "/portal/passes/",
            "/portal/support/",
        ):
            assert phone.goto(demo_system.url + path).status == 200, path
    finally:
        staff.close()
        guardian.close()
    assert violations == []

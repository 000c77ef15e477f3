"""Acceptance in Debian's Chromium (B11): a guardian files 欠席連絡 on a phone; school staff see it
in today's list by class; at the check time the exception list holds exactly the child with
neither a pass nor a report (one child passed the gate, one was reported absent, one neither).

The system is `mimamori run --demo`; its own workers run the sweep that makes the list. A small
school of three children is added to it with `mimamori shell`, and the one pass is written there
directly (the readers' API that records passes is tested on its own)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.browser import DEMO_PASSWORD, DESKTOP, PHONE, RunningSystem, log_in, shot

pytestmark = pytest.mark.browser
TOKYO = ZoneInfo("Asia/Tokyo")  # settings.TIME_ZONE: the server's today

SETUP = """
import json
from django.contrib.auth.hashers import make_password
from django.utils import timezone
from mimamori.accounts.models import Role, User
from mimamori.gates.models import GatePass, GateReader, new_reader_token
from mimamori.registry.models import Municipality, School
from mimamori.registry.registrants import enrol

city = Municipality.objects.order_by("pk").first()
school = School.objects.create(municipality=city, name="見守台小学校", sender_local_part="mimamoridai-sho")
password = make_password(%(password)r)
children = {}
for key, name, kana in [("passed", "青木 蓮", "あおき れん"), ("absent", "井上 葵", "いのうえ あおい"),
                        ("neither", "上田 湊", "うえだ みなと")]:
    child = enrol(school, child_name=name, child_name_kana=kana, grade=4, class_name="2",
                  addresses=[f"{key}@docomo.ne.jp"]).registrant
    child.account.password = password
    child.account.save()
    child.registration_code_digest = ""
    child.save()
    children[key] = {"id": child.pk, "login": child.account.username, "name": name}
User.objects.create(username="mimamoridai", role=Role.SCHOOL, school=school, password=password,
                    last_name="見守台小学校")
_, digest = new_reader_token()
reader = GateReader.objects.create(school=school, name="正門", token_digest=digest)
GatePass.objects.create(reader=reader, event_id="e1", tag="T1", registrant_id=children["passed"]["id"],
                        direction="in", at=timezone.now(), outcome="mailed")
print(json.dumps({"school": school.pk, "children": children}))
"""


def add_small_school(system: RunningSystem) -> dict[str, Any]:
    env = {
        **os.environ,
        "MIMAMORI_DATA_DIR": str(system.output.parent),
        "DATABASE_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "mimamori", "shell", "-c", SETUP % {"password": DEMO_PASSWORD}],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def test_a_guardian_reports_an_absence_and_the_exception_list_is_right(
    demo_system: RunningSystem, chromium: Any
) -> None:
    from playwright.sync_api import expect

    world = add_small_school(demo_system)
    children = world["children"]
    guardian = chromium.new_context(viewport=PHONE, is_mobile=True, locale="ja-JP", java_script_enabled=False)
    staff = chromium.new_context(viewport=DESKTOP, locale="ja-JP")
    try:
        # The guardian of the child who stays home, on a phone without JavaScript.
        page = guardian.new_page()
        log_in(page, demo_system.url + "/portal/login/", children["absent"]["login"])
        page.get_by_role("link", name="欠席・遅刻連絡").click()
        expect(page.get_by_role("heading", name="欠席・遅刻連絡")).to_be_visible()
        page.get_by_label("欠席", exact=True).check()
        page.get_by_label("理由").fill("発熱のため休みます。")
        shot(page, "gates-1-absence-form-phone")
        page.get_by_role("button", name="学校に連絡する").click()
        expect(page.locator(".messages")).to_contain_text("欠席を学校に連絡しました")
        expect(page.locator(".reports")).to_contain_text("発熱のため休みます。")
        shot(page, "gates-2-absence-filed-phone")

        # School staff: today's list shows the report under its class.
        console = staff.new_page()
        log_in(console, demo_system.url + "/console/login/", "mimamoridai")
        school_url = f"{demo_system.url}/console/schools/{world['school']}/"
        console.goto(school_url)
        console.get_by_role("link", name="本日の出欠").click()
        expect(console.get_by_role("heading", name="本日の出欠: 見守台小学校")).to_be_visible()
        reports = console.locator("table.absences")
        expect(reports.get_by_role("row")).to_have_count(2)  # the header and the one report
        expect(reports).to_contain_text(children["absent"]["name"])
        expect(reports).to_contain_text("発熱のため休みます。")
        expect(console.locator("body")).to_contain_text("4年2組")

        # Today is a school day whatever the weekday this runs on, and the check is due at once.
        console.get_by_role("link", name="学校カレンダー").first.click()
        console.get_by_label("日付").fill(datetime.datetime.now(TOKYO).date().isoformat())
        console.get_by_label("授業日").check()
        console.get_by_role("button", name="保存").click()
        console.goto(school_url)
        console.get_by_role("link", name="出欠確認の設定").click()
        console.get_by_label("登校確認の時刻").fill("00:00")
        console.get_by_role("button", name="確認時刻を保存").click()
        expect(console.locator(".messages")).to_contain_text("保存しました")

        # The running workers' sweep makes the list within a few seconds.
        console.goto(school_url)
        console.get_by_role("link", name="本日の出欠").click()
        listed = console.locator("table.exceptions")
        for _ in range(60):
            if listed.count():
                break
            console.wait_for_timeout(500)
            console.reload()
        rows = listed.locator("tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text(children["neither"]["name"])
        expect(rows.first).to_contain_text("未確認")
        expect(listed).not_to_contain_text(children["passed"]["name"])
        expect(listed).not_to_contain_text(children["absent"]["name"])
        shot(console, "gates-3-todays-attendance")
    finally:
        guardian.close()
        staff.close()

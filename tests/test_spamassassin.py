"""Every kind of mail mimamori sends, scored by Debian's SpamAssassin (issue 12, deliverability).

Each mail is made through its real path (the console, the portal, the sweep's steps, the
tasks) and received by a real SMTP sink, which keeps the bytes exactly as they would reach the
relay. `spamassassin -L -t` scores them with the rules Debian's package ships, local tests only
(no DNS, no network: sa-update is not run). Each must score below 1, well under the 5 at
which SpamAssassin calls a mail spam, since carriers' filters weigh similar signs. A failure
prints every mail's score and the rules it hit.

SpamAssassin takes about a second to start, so one run scores all of them.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.gates import passes, readers
from mimamori.maintenance import windows
from mimamori.maintenance.notices import due_notices
from mimamori.quakes import alerts
from mimamori.quakes.jma import InfoType, Kind, Place, Report, Status
from mimamori.quakes.models import EarthquakeSettings
from mimamori.receipts.reminders import send_reminder
from mimamori.registry import reachtests
from mimamori.registry.addresses import set_addresses
from mimamori.support.models import Inquiry
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink, free_port
from tests.tasks import run_until_quiet

pytestmark = [pytest.mark.spamassassin, pytest.mark.django_db]

SPAMASSASSIN = shutil.which("spamassassin")
LIMIT = 1.0

if SPAMASSASSIN is None:
    pytest.skip(
        "Debian's spamassassin is not installed (`make install-system` installs it)", allow_module_level=True
    )


class RawSink(Sink):
    """The test sink (which keeps each message's bytes as they arrived), taking them one by one."""

    def take(self, recipient: str) -> bytes:
        """The first message not yet taken that came for ``recipient``."""
        with self.lock:
            found = [n for n, (r, _) in enumerate(self.raw) if r == recipient]
            assert found, f"no message for {recipient}"
            return self.raw.pop(found[0])[1]


@pytest.fixture
def sink(settings: Any) -> Iterator[RawSink]:
    raw_sink = RawSink()
    controller = Controller(raw_sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    # Links as production writes them: a site's https address, not the test's 127.0.0.1:8000
    # (a link to a bare IP address is itself a sign of spam).
    settings.BASE_URL = "https://mimamori.iwamizawa.example.jp"
    try:
        yield raw_sink
    finally:
        controller.stop()


def every_kind_of_mail(sink: RawSink) -> dict[str, bytes]:
    """One mail of each kind, each through the path that sends it in production."""
    mails: dict[str, bytes] = {}
    city = make_municipality(
        "iwamizawa",
        name="岩見沢市",
        mail_domain="mail.mimamori-iwamizawa.jp",
        support_email="support@city.iwamizawa.example.jp",
    )
    school = make_school(city, name="緑小学校", local="midori-sho")
    staff = make_staff(Role.SCHOOL, school=school)
    # Signed, as production mail is (DKIM rules are local tests too).
    call_command("dkim_keygen", municipality=city.code, stdout=io.StringIO())

    registrant = make_registrant(school, child_name="見守 花子")
    set_addresses(registrant, ["hanako.mama@docomo.ne.jp", "hanako.papa@ezweb.ne.jp", "", ""])
    run_until_quiet()
    mails["登録完了メール"] = sink.take("hanako.mama@docomo.ne.jp")
    sink.take("hanako.papa@ezweb.ne.jp")

    broadcast = sending.compose(
        staff,
        subject="【不審者情報】緑小学校付近",
        body=(
            "本日15時ごろ、緑小学校の北側の公園付近で、児童に声をかける不審な男性が目撃されました。\n"
            "下校時はできるだけ複数で帰るよう、ご家庭でもお声がけください。\n"
            "警察に通報済みで、パトロールを強化しています。"
        ),
        scope=resolve_scope(staff, school_ids=[school.pk]),
        request_confirmation=True,
    )
    assert sending.send(broadcast)
    run_until_quiet()
    mails["broadcast"] = sink.take("hanako.mama@docomo.ne.jp")
    sink.take("hanako.papa@ezweb.ne.jp")

    assert send_reminder(broadcast, staff) == 2
    run_until_quiet()
    mails["reminder 【再送】"] = sink.take("hanako.mama@docomo.ne.jp")
    sink.take("hanako.papa@ezweb.ne.jp")

    now = timezone.now()
    window = windows.plan(
        make_staff(Role.CENTRE),
        starts_at=now + timedelta(days=5),
        ends_at=now + timedelta(days=5, hours=2),
        message="システム更新のため、保護者向けサイトを停止します。停止中もメールは届きます。",
        municipality_codes=[city.code],
        now=now,
    )
    assert due_notices(now=window.starts_at - timedelta(hours=city.maintenance_notice_lead_hours)) == 1
    run_until_quiet()
    mails["maintenance notice"] = sink.take("hanako.mama@docomo.ne.jp")
    sink.take("hanako.papa@ezweb.ne.jp")

    inquiry_form = {
        "name": "見守 花子の母",
        "reply_to": "",
        "subject": "メールが届きません",
        "body": "昨日の不審者情報のメールが届いていないようです。受信設定を確認する方法を教えてください。",
    }
    guardian = Client()
    guardian.force_login(registrant.account)
    assert guardian.post(reverse("portal:inquiry"), inquiry_form).status_code == 302
    run_until_quiet()
    mails["inquiry copy to the desk"] = sink.take(city.support_email)
    mails["acknowledgement with the reference number"] = sink.take("hanako.mama@docomo.ne.jp")

    desk = Client()
    desk.force_login(make_staff(Role.MUNICIPALITY, municipality=city))
    answer = (
        "ドメイン指定受信に mail.mimamori-iwamizawa.jp を追加してください。"
        "設定の手順は、よくある質問にあります。"
    )
    inquiry = Inquiry.objects.get()
    assert desk.post(reverse("console:inquiry", args=[inquiry.pk]), {"answer": answer}).status_code == 302
    run_until_quiet()
    mails["answer to the guardian"] = sink.take("hanako.mama@docomo.ne.jp")

    sink.refusals["hanako.mama@docomo.ne.jp"] = ["550 5.1.1 <hanako.mama@docomo.ne.jp>: User unknown"]
    assert sending.send(
        sending.compose(
            staff,
            subject="台風接近に伴う下校時刻の変更",
            body="明日は台風の接近が予想されるため、全学年13時に下校します。",
            scope=resolve_scope(staff, school_ids=[school.pk]),
        )
    )
    run_until_quiet()
    sink.take("hanako.papa@ezweb.ne.jp")  # the broadcast
    mails["suppressed-address notice"] = sink.take("hanako.papa@ezweb.ne.jp")

    reachtests.start(school, by=staff)
    run_until_quiet()
    mails["到達テスト"] = sink.take("hanako.papa@ezweb.ne.jp")

    # An earthquake alert: the guardians' 安否確認 broadcast, and the notice to the support desk.
    EarthquakeSettings.objects.create(municipality=city, city_codes=["0121000"])
    now = timezone.now()
    alerts.receive(
        Report(
            kind=Kind.DETAIL,
            status=Status.NORMAL,
            info_type=InfoType.ISSUED,
            event_id="20261207110000",
            serial=1,
            title="震源・震度情報",
            reported_at=now,
            origin_time=now - timedelta(minutes=2),
            hypocentre="石狩地方中部",
            magnitude="5.4",
            cities=[Place(code="0121000", name="岩見沢市", intensity="5-")],
        )
    )
    run_until_quiet()
    mails["earthquake 安否確認"] = sink.take("hanako.papa@ezweb.ne.jp")
    mails["earthquake notice to the desk"] = sink.take(city.support_email)

    # A gate pass (登校), to the slots the guardian chose: all, of which slot 1 is suppressed by now.
    registrant.tag_id = "04A1B2C3"
    registrant.save(update_fields=["tag_id"])
    reader, _token = readers.register(school, "正門", "校舎南側", by=staff)
    at = timezone.now().isoformat()
    passes.record(reader, [{"id": "1", "tag": "04A1B2C3", "direction": "in", "at": at}])
    run_until_quiet()
    mails["登下校メール"] = sink.take("hanako.papa@ezweb.ne.jp")
    assert not sink.raw
    return mails


# SpamAssassin's own test string (GTUBE), which every rule set scores 1000: a control that the
# scanner runs with its rules loaded. In two pieces, so that this file is not itself spam.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# What SpamAssassin adds to each message: its score, and each rule hit with its points.
STATUS = re.compile(r"^X-Spam-Status: (?:Yes|No), score=(-?[\d.]+) ", re.M)
RULES = re.compile(r"^X-Spam-Rules: (.*(?:\n[ \t].*)*)", re.M)


def scores(paths: list[Path]) -> list[tuple[float, str]]:
    """(score, rules hit with their points) of each message, by one `spamassassin -L` run:
    local tests only, no Bayes learning, no state written, messages left unwrapped."""
    done = subprocess.run(
        [
            SPAMASSASSIN or "spamassassin",
            *("--local", "--nocreate-prefs"),
            *("--cf=use_bayes 0", "--cf=bayes_auto_learn 0", "--cf=report_safe 0"),
            "--cf=add_header all Rules _TESTSSCORES(, )_",
            *map(str, paths),
        ],
        capture_output=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(paths[0].parent), "LANG": "C.UTF-8"},
    )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    points = [float(found) for found in STATUS.findall(output)]
    rules = [" ".join(found.split()) for found in RULES.findall(output)]
    assert len(points) == len(rules) == len(paths), output[-3000:]
    return list(zip(points, rules, strict=True))


def test_every_kind_of_mail_scores_below_one(sink: RawSink, tmp_path: Path) -> None:
    mails = every_kind_of_mail(sink)
    assert len(mails) == 12
    mails["control (GTUBE)"] = (
        "From: test@example.jp\r\nTo: test@example.jp\r\nSubject: control\r\n\r\n" + GTUBE + "\r\n"
    ).encode()
    paths = []
    for n, raw in enumerate(mails.values()):
        paths.append(tmp_path / f"{n}.eml")
        paths[-1].write_bytes(raw)
    scored = dict(zip(mails, scores(paths), strict=True))

    control, _ = scored.pop("control (GTUBE)")
    assert control >= 5, "SpamAssassin did not recognise its own test string: are its rules installed?"
    summary = "\n".join(f"{kind}: {points:.1f} ({rules})" for kind, (points, rules) in scored.items())
    print(summary)
    high = [kind for kind, (points, _) in scored.items() if points >= LIMIT]
    assert not high, f"{', '.join(high)}: {LIMIT} or more\n{summary}"

"""One reliable path for every mail that is not a broadcast (mail/outbox.py): 4xx retried with
backoff, 5xx failed with the reply that staff see, nothing sent twice, nothing left behind.

Through the real paths: the portal's forms and set_addresses queue the mails, the tasks send
them to a real SMTP sink that refuses as told.
"""

from __future__ import annotations

import io
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.mail import verp
from mimamori.mail.models import OutgoingMail, OutgoingStatus
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Address, AddressStatus
from mimamori.support.models import Inquiry
from mimamori.tasking.sweep import sweep
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db


def inquire(city_code: str = "desk-city") -> Inquiry:
    city = make_municipality(city_code, support_email=f"desk@{city_code}.example.jp")
    form = {
        "name": "佐藤 花子",
        "reply_to": "hanako@docomo.ne.jp",
        "subject": "メールが届きません",
        "body": "昨日の不審者情報のメールが届いていないようです。",
        "municipality": city.pk,
    }
    assert Client().post(reverse("portal:inquiry"), form).status_code == 302
    return Inquiry.objects.get(municipality=city)


def test_every_kind_gets_through_a_451_then_250_relay_once(smtp_sink: Sink) -> None:
    registrant = make_registrant(make_school())
    smtp_sink.refusals["mama@docomo.ne.jp"] = ["451 4.3.0 Try again later"]
    smtp_sink.refusals["desk@desk-city.example.jp"] = ["451 4.7.1 Greylisted", "451 4.7.1 Greylisted"]
    set_addresses(registrant, ["mama@docomo.ne.jp", "", "", ""])
    inquiry = inquire()
    run_until_quiet()

    assert smtp_sink.copies() == {
        "mama@docomo.ne.jp": 1,
        "desk@desk-city.example.jp": 1,
        "hanako@docomo.ne.jp": 1,
    }
    rows = {mail.kind: mail for mail in OutgoingMail.objects.all()}
    assert set(rows) == {"registration_complete", "inquiry_copy", "inquiry_acknowledgement"}
    assert (rows["inquiry_acknowledgement"].status, rows["inquiry_acknowledgement"].attempts) == ("sent", 1)
    assert (rows["registration_complete"].status, rows["registration_complete"].attempts) == ("sent", 2)
    assert (rows["inquiry_copy"].status, rows["inquiry_copy"].attempts) == ("sent", 3)
    assert rows["inquiry_copy"].target == f"inquiry {inquiry.pk}"
    assert all(row.message == b"" for row in rows.values())  # no body kept once it is sent
    # Each mail has its own envelope sender, which names it.
    (envelope,) = smtp_sink.envelope_senders["mama@docomo.ne.jp"]
    assert verp.read(envelope) == (verp.MAIL, rows["registration_complete"].pk)
    assert envelope.endswith("@" + registrant.school.municipality.mail_domain)


def test_a_5xx_fails_at_once_is_shown_to_staff_and_counts_against_the_address(
    smtp_sink: Sink, client: Any
) -> None:
    school = make_school()
    registrant = make_registrant(school)
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 <gone@docomo.ne.jp>: User unknown"]
    set_addresses(registrant, ["gone@docomo.ne.jp", "", "", ""])
    run_until_quiet()

    mail = OutgoingMail.objects.get()
    assert (mail.status, mail.attempts) == (OutgoingStatus.FAILED, 1)
    assert mail.reply == "550 5.1.1 <gone@docomo.ne.jp>: User unknown"
    assert Address.objects.get().status == AddressStatus.SUPPRESSED

    client.force_login(make_staff(Role.SCHOOL, school=school))
    page = client.get(reverse("console:registrant", args=[registrant.pk])).content.decode()
    assert "登録完了メール" in page
    assert "550 5.1.1 &lt;gone@docomo.ne.jp&gt;: User unknown" in page
    assert '<td class="error">失敗</td>' in page


def test_temporary_refusals_stop_at_the_limit(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_RETRY_MAX_ATTEMPTS = 3
    inquire()
    smtp_sink.refusals["desk@desk-city.example.jp"] = ["451 4.3.0 later"] * 10
    run_until_quiet()
    mail = OutgoingMail.objects.get(kind="inquiry_copy")
    assert (mail.status, mail.attempts, mail.reply) == (OutgoingStatus.FAILED, 3, "451 4.3.0 later")
    assert smtp_sink.copies() == {"hanako@docomo.ne.jp": 1}  # the acknowledgement only


def test_a_mail_a_dead_worker_held_is_sent_once_by_the_sweep(smtp_sink: Sink, settings: Any) -> None:
    from django_tasks_db.models import DBTaskResult

    from mimamori.support.tasks import send_inquiry_copy

    send_inquiry_copy.func(inquire().pk)  # the copy is queued in the outbox
    # A worker took it and died before it spoke to the relay: the row is held, its task gone.
    DBTaskResult.objects.all().delete()
    OutgoingMail.objects.update(
        status=OutgoingStatus.SENDING,
        claimed_at=timezone.now() - timedelta(seconds=settings.MIMAMORI_DELIVERY_LEASE_SECONDS + 1),
    )

    assert sweep()["mail_reclaimed"] == 1
    run_until_quiet()
    assert smtp_sink.copies() == {"desk@desk-city.example.jp": 1}
    assert OutgoingMail.objects.get().status == OutgoingStatus.SENT
    assert sweep()["mail_reclaimed"] == 0
    run_until_quiet()
    assert smtp_sink.copies() == {"desk@desk-city.example.jp": 1}


def test_a_bounce_of_a_registration_mail_fails_it_and_suppresses_the_address(smtp_sink: Sink) -> None:
    registrant = make_registrant(make_school())
    set_addresses(registrant, ["ghost@ezweb.ne.jp", "", "", ""])
    run_until_quiet()
    (envelope,) = smtp_sink.envelope_senders["ghost@ezweb.ne.jp"]
    bounce = (
        f"From: MAILER-DAEMON@relay.example.jp\r\nTo: {envelope}\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.jp\r\n\r\n"
        "Final-Recipient: rfc822; ghost@ezweb.ne.jp\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n--B--\r\n"
    )
    stdin, out = sys.stdin, io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(bounce.encode()), encoding="utf-8")
    try:
        call_command("bounce", envelope, verbosity=2, stdout=out)
    finally:
        sys.stdin = stdin
    assert out.getvalue().startswith("recorded: mail")
    mail = OutgoingMail.objects.get()
    assert mail.status == OutgoingStatus.FAILED
    assert mail.reply.startswith("bounce:")
    assert Address.objects.get().status == AddressStatus.SUPPRESSED


def test_staff_see_how_an_inquirys_mails_fared(smtp_sink: Sink, client: Any) -> None:
    inquiry = inquire()
    smtp_sink.refusals["desk@desk-city.example.jp"] = ["554 5.7.1 Message refused"]
    run_until_quiet()
    client.force_login(make_staff(Role.MUNICIPALITY, municipality=inquiry.municipality))
    page = client.get(reverse("console:inquiry", args=[inquiry.pk])).content.decode()
    assert "この問い合わせのメール" in page
    assert "サポート窓口へのコピー" in page
    assert "554 5.7.1 Message refused" in page
    assert '<td class="error">失敗</td>' in page


def test_mails_posted_together_go_over_one_connection_and_a_refusal_waits_alone(smtp_sink: Sink) -> None:
    from django.core.mail import EmailMessage
    from django.db import transaction

    from mimamori import tasking
    from mimamori.mail import outbox

    city = make_municipality()
    addresses = ["a@docomo.ne.jp", "b@ezweb.ne.jp", "c@example.jp", "gone@example.jp"]
    smtp_sink.refusals["b@ezweb.ne.jp"] = ["451 4.3.0 Try again later"]
    smtp_sink.refusals["gone@example.jp"] = ["550 5.1.1 User unknown"]
    with transaction.atomic():
        posted = [
            outbox.post(
                EmailMessage("登校", "本文", "school@example.jp", [to]),
                kind="gate_pass",
                domain=city.mail_domain,
                municipality=city,
                send=False,
            )
            for to in addresses
        ]
        outbox.send_together(posted, queue=tasking.GATES)
    run_until_quiet()

    assert smtp_sink.copies() == {"a@docomo.ne.jp": 1, "b@ezweb.ne.jp": 1, "c@example.jp": 1}
    # The first attempts of all four on one connection, in the order posted.
    first = next(iter(smtp_sink.by_session.values()))
    assert first == addresses
    status = dict(OutgoingMail.objects.values_list("to", "status"))
    assert status == {
        "a@docomo.ne.jp": OutgoingStatus.SENT,
        "b@ezweb.ne.jp": OutgoingStatus.SENT,  # tried again on its own, after the 451
        "c@example.jp": OutgoingStatus.SENT,
        "gone@example.jp": OutgoingStatus.FAILED,
    }

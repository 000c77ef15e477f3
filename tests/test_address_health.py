"""Address health (P5): refusals and bounces mark an address; a suppressed one gets no more mail.

Everything goes through the real paths: a real SMTP sink that refuses, the delivery tasks, and
bounces handed to `mimamori bounce` on standard input as a Postfix pipe transport would.
"""

from __future__ import annotations

import io
import re
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.mail import verp
from mimamori.receipts.reminders import send_reminder
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Address, AddressFailure, AddressStatus, School
from mimamori.registry.registrants import deregister
from mimamori.registry.retention import erase_expired
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db


def broadcast_to(school: School, **fields: Any) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject=fields.pop("subject", "不審者情報"),
        body="下校時に注意してください。",
        scope=resolve_scope(staff, school_ids=[school.pk]),
        **fields,
    )
    assert sending.send(broadcast)
    run_until_quiet()
    broadcast.refresh_from_db()
    return broadcast


def status_of(email: str) -> set[str]:
    return set(Address.objects.filter(email=email).values_list("status", flat=True))


def bounce(raw: str, recipient: str = "") -> str:
    """`mimamori bounce` as the pipe transport runs it: the message on standard input."""
    out = io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(raw.encode()), encoding="utf-8")
    try:
        call_command("bounce", *([recipient] if recipient else []), verbosity=2, stdout=out)
    finally:
        sys.stdin = stdin
    return out.getvalue()


def dsn(to: str, *, action: str = "failed", status: str = "5.1.1", diagnostic: str = "") -> str:
    """A Postfix-style DSN (RFC 3464), written from the RFC, for a mail sent to ``to``."""
    diagnostic = diagnostic or f"smtp; 550 {status} <{to}>: Recipient address rejected: User unknown"
    return (
        "From: MAILER-DAEMON@relay.example.jp (Mail Delivery System)\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host relay.example.jp.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        "--B\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; relay.example.jp\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {to}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        "\r\n"
        "--B\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        "Subject: =?utf-8?b?5LiN5a+p6ICF5oOF5aCx?=\r\n"
        "\r\n"
        "--B--\r\n"
    )


def test_no_such_user_at_rcpt_suppresses_the_address_and_the_next_broadcast_skips_it(
    smtp_sink: Sink,
) -> None:
    school = make_school()
    make_registrant(school, ["gone@docomo.ne.jp", "mama@docomo.ne.jp"])
    sibling = make_registrant(school, ["gone@docomo.ne.jp"])
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 <gone@docomo.ne.jp>: User unknown"]

    first = broadcast_to(school)
    assert sending.progress(first).failed == 1
    assert status_of("gone@docomo.ne.jp") == {AddressStatus.SUPPRESSED}  # the sibling's row too
    (failure,) = AddressFailure.objects.all()
    assert (failure.email, failure.no_such_user, failure.status, failure.source) == (
        "gone@docomo.ne.jp",
        True,
        "5.1.1",
        "smtp",
    )

    smtp_sink.refusals.clear()
    second = broadcast_to(school)
    assert smtp_sink.attempts["gone@docomo.ne.jp"] == 1  # never offered again
    # Two broadcasts, and the notice that slot 1 no longer receives mail (asserted below).
    assert smtp_sink.copies() == {"mama@docomo.ne.jp": 3}
    assert (second.message_count, second.suppressed_count) == (1, 1)
    assert sending.progress(second).suppressed == 1
    # Its only address is suppressed: the sibling is not counted as reached.
    assert not Delivery.objects.filter(broadcast=second, recipients__registrant=sibling).exists()
    # A retry of the first broadcast does not offer it again either.
    assert sending.retry_failed(first) == 0


def test_other_failures_suppress_after_the_limit_within_the_window(smtp_sink: Sink, settings: Any) -> None:
    settings.MIMAMORI_BOUNCE_LIMIT = 2
    school = make_school()
    make_registrant(school, ["full@au.com"])
    smtp_sink.refusals["full@au.com"] = ["552 5.2.2 Mailbox full"]

    broadcast_to(school)
    assert status_of("full@au.com") == {AddressStatus.BOUNCING}  # still mailed
    broadcast_to(school)
    assert smtp_sink.attempts["full@au.com"] == 2
    assert status_of("full@au.com") == {AddressStatus.SUPPRESSED}

    # Failures older than the window do not count.
    Address.objects.update(status=AddressStatus.OK)
    AddressFailure.objects.update(
        at=timezone.now() - timedelta(days=settings.MIMAMORI_BOUNCE_WINDOW_DAYS + 1)
    )
    broadcast_to(school)
    assert status_of("full@au.com") == {AddressStatus.BOUNCING}


def test_a_temporary_refusal_counts_once_given_up_and_a_cut_connection_not_at_all(
    smtp_sink: Sink, settings: Any
) -> None:
    settings.MIMAMORI_RETRY_MAX_ATTEMPTS = 2
    school = make_school()
    make_registrant(school, ["busy@softbank.ne.jp"])
    smtp_sink.refusals["busy@softbank.ne.jp"] = ["451 4.3.0 later"] * 2
    broadcast_to(school)
    assert list(AddressFailure.objects.values_list("permanent", "status")) == [(False, "4.3.0")]
    assert status_of("busy@softbank.ne.jp") == {AddressStatus.BOUNCING}

    settings.EMAIL_PORT = 1  # nothing listens: the connection fails, which says nothing of the address
    broadcast_to(school)
    assert AddressFailure.objects.count() == 1


def test_a_dsn_through_mimamori_bounce_fails_the_mail_and_suppresses_the_address(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["ghost@ezweb.ne.jp"])
    broadcast = broadcast_to(school)
    delivery = Delivery.objects.get(broadcast=broadcast)
    assert delivery.status == DeliveryStatus.ACCEPTED  # the relay took it; the bounce comes later

    (envelope,) = smtp_sink.envelope_senders["ghost@ezweb.ne.jp"]
    local, _, domain = envelope.partition("@")
    assert domain == school.municipality.mail_domain
    # Opaque: one sealed block, which names neither the address nor the row.
    assert re.fullmatch(r"b-[a-z2-7]{26}", local)
    assert "ghost" not in local
    assert verp.read(envelope) == (verp.DELIVERY, delivery.pk)

    said = bounce(dsn("ghost@ezweb.ne.jp"), recipient=envelope)
    assert said.startswith("recorded")
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.reply.startswith("bounce:")
    assert "5.1.1" in delivery.reply
    assert sending.progress(broadcast).failed == 1
    assert status_of("ghost@ezweb.ne.jp") == {AddressStatus.SUPPRESSED}
    assert AddressFailure.objects.get().source == "bounce"


def test_the_envelope_recipient_is_found_in_the_headers_when_not_given(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["ghost@ezweb.ne.jp"])
    broadcast_to(school)
    (envelope,) = smtp_sink.envelope_senders["ghost@ezweb.ne.jp"]
    assert bounce(f"X-Original-To: {envelope}\r\nDelivered-To: {envelope}\r\n" + dsn(envelope)).startswith(
        "recorded"
    )
    assert status_of("ghost@ezweb.ne.jp") == {AddressStatus.SUPPRESSED}


def test_auto_replies_delays_and_strangers_are_not_bounces(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["away@gmail.com"])
    broadcast_to(school)
    (envelope,) = smtp_sink.envelope_senders["away@gmail.com"]
    out_of_office = (
        f"From: away@gmail.com\r\nTo: {envelope}\r\nSubject: =?utf-8?b?5LiN5Zyo44Gu44GK55+l44KJ44Gb?=\r\n"
        "Auto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "I am out of the office until Monday.\r\n"
    )
    assert bounce(out_of_office, envelope).startswith("ignored: not a bounce")
    assert bounce(dsn("away@gmail.com", action="delayed", status="4.4.1"), envelope).startswith(
        "ignored: not a bounce"
    )
    forged = "b-" + "a" * 26 + "@" + school.municipality.mail_domain
    assert bounce(dsn("away@gmail.com"), forged).startswith("ignored: not addressed")
    assert bounce(dsn("away@gmail.com"), "postmaster@example.jp").startswith("ignored: not addressed")
    assert status_of("away@gmail.com") == {AddressStatus.OK}
    assert not AddressFailure.objects.exists()


def test_a_carriers_plain_text_bounce_is_understood(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["nobody@docomo.ne.jp"])
    broadcast_to(school)
    (envelope,) = smtp_sink.envelope_senders["nobody@docomo.ne.jp"]
    plain = (
        f"From: MAILER-DAEMON@docomo.ne.jp\r\nTo: {envelope}\r\nSubject: Returned mail: User unknown\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        "The original message was received at Tue, 1 Dec 2026 12:00:00 +0900\r\n\r\n"
        "   ----- The following addresses had permanent fatal errors -----\r\n"
        "<nobody@docomo.ne.jp>\r\n\r\n"
        "   ----- Transcript of session follows -----\r\n"
        "... while talking to mfsmax.docomo.ne.jp.:\r\n"
        ">>> RCPT To:<nobody@docomo.ne.jp>\r\n"
        "<<< 550 Unknown user nobody@docomo.ne.jp\r\n"
        "550 <nobody@docomo.ne.jp>... User unknown\r\n"
    )
    assert bounce(plain, envelope).startswith("recorded")
    assert status_of("nobody@docomo.ne.jp") == {AddressStatus.SUPPRESSED}


def test_saving_the_address_again_tries_it_again_and_the_portal_says_why(
    smtp_sink: Sink, client: Any
) -> None:
    school = make_school()
    registrant = make_registrant(school, ["gone@docomo.ne.jp", "papa@au.com"])
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    broadcast_to(school)

    client.force_login(registrant.account)
    page = client.get(reverse("portal:addresses")).content.decode()
    assert "アドレス1（gone@docomo.ne.jp）にメールが届かなかったため" in page

    smtp_sink.refusals.clear()
    set_addresses(registrant, ["gone@docomo.ne.jp", "papa@au.com", "", ""])
    assert status_of("gone@docomo.ne.jp") == {AddressStatus.OK}
    run_until_quiet()
    assert len(smtp_sink.to("gone@docomo.ne.jp")) == 1  # the 登録完了メール, as for a new address
    assert "届かなかった" not in client.get(reverse("portal:addresses")).content.decode()


def test_reminders_skip_a_suppressed_address(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["ghost@ezweb.ne.jp"])
    make_registrant(school, ["mama@docomo.ne.jp"])
    broadcast = broadcast_to(school, request_confirmation=True)
    (envelope,) = smtp_sink.envelope_senders["ghost@ezweb.ne.jp"]
    bounce(dsn("ghost@ezweb.ne.jp"), envelope)

    assert send_reminder(broadcast, make_staff(Role.SCHOOL, school=school)) == 1
    run_until_quiet()
    assert smtp_sink.copies() == {"ghost@ezweb.ne.jp": 1, "mama@docomo.ne.jp": 2}


def test_staff_see_the_status_on_the_registrant_page_and_the_api(smtp_sink: Sink, client: Any) -> None:
    from tests.test_api import Api

    school = make_school()
    registrant = make_registrant(school, ["gone@docomo.ne.jp", "papa@au.com"])
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    broadcast_to(school)
    staff = make_staff(Role.SCHOOL, school=school)

    client.force_login(staff)
    page = client.get(reverse("console:registrant", args=[registrant.pk])).content.decode()
    assert '<td class="error" data-health="1">届きません（送信を停止中）</td>' in page
    assert '<td data-health="2">届いています</td>' in page

    slots = Api(staff).get(f"/registrants/{registrant.pk}").json()["addresses"]
    assert [(s["slot"], s["status"]) for s in slots] == [(1, "suppressed"), (2, "ok"), (3, None), (4, None)]


def test_erasing_a_child_erases_the_failures_of_its_own_addresses(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    leaving = make_registrant(school, ["gone@docomo.ne.jp", "shared@au.com"])
    make_registrant(school, ["shared@au.com"])
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    smtp_sink.refusals["shared@au.com"] = ["552 5.2.2 Mailbox full"]
    broadcast_to(school)
    assert set(AddressFailure.objects.values_list("email", flat=True)) == {
        "gone@docomo.ne.jp",
        "shared@au.com",
    }

    deregister(leaving)
    settings.MIMAMORI_RETENTION_DAYS = 0
    assert erase_expired(timezone.now() + timedelta(seconds=1)) == 1
    # The shared address is still a sibling's: its history stays.
    assert set(AddressFailure.objects.values_list("email", flat=True)) == {"shared@au.com"}


def test_envelope_senders_come_back_to_their_mail_and_follow_the_key(settings: Any) -> None:
    sender = verp.envelope_sender(verp.DELIVERY, 123456789, "mail.example.jp")
    assert sender.endswith("@mail.example.jp")
    assert verp.read(sender) == (verp.DELIVERY, 123456789)
    assert verp.read(f"<{sender.upper()}>") == (verp.DELIVERY, 123456789)  # case-folded by a relay
    assert verp.envelope_sender(verp.DELIVERY, 123456790, "mail.example.jp") != sender
    # Only the spelling we wrote: the last character has two unused bits, which must stay clear.
    token = sender[len("b-") : sender.index("@")]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    for neighbour in {alphabet[(alphabet.index(token[-1]) & ~3) + bits] for bits in range(4)} - {token[-1]}:
        assert verp.unseal(token[:-1] + neighbour) is None

    settings.MIMAMORI_BOUNCE_DOMAIN = "bounces.example.jp"
    assert verp.envelope_sender(verp.MAIL, 7, "mail.example.jp").endswith("@bounces.example.jp")

    settings.SECRET_KEY = "another key, after rotation"
    assert verp.read(sender) is None


def test_the_guardian_is_told_once_at_a_slot_that_still_works(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["gone@docomo.ne.jp", "", "papa@au.com"], child_name="見守 花子")
    make_registrant(school, ["alone@docomo.ne.jp"])  # no other slot: nobody to tell
    # Someone mail reaches, so that the second broadcast has a recipient (one to nobody is refused).
    make_registrant(school, ["fine@au.com"])
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    smtp_sink.refusals["alone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    broadcast_to(school)
    broadcast_to(school)

    (notice,) = smtp_sink.to("papa@au.com")  # slot 3 gets no broadcast: this is the notice, once
    assert "届きません" in str(notice["Subject"])
    body = notice.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "アドレス1（gone@docomo.ne.jp）にメールが届かなかったため" in text
    assert "見守 花子 さん" in text
    assert "同じアドレスをもう一度登録すると、送信を再開します" in text
    assert notice["From"].addresses[0].addr_spec == school.sender_address


def test_the_schools_report_lists_what_mail_does_not_reach_on_screen_and_as_csv(
    smtp_sink: Sink, client: Any
) -> None:
    school = make_school()
    gone = make_registrant(school, ["gone.mama@docomo.ne.jp", "fine@au.com"], grade=2, child_name="見守 花子")
    make_registrant(school, ["full.papa@au.com"], grade=1, child_name="見守 一郎")
    make_registrant(school, ["ok@au.com"])
    other = make_school(school.municipality)
    make_registrant(other, ["elsewhere@docomo.ne.jp"])
    for address in ("gone.mama@docomo.ne.jp", "elsewhere@docomo.ne.jp"):
        smtp_sink.refusals[address] = ["550 5.1.1 User unknown"]
    smtp_sink.refusals["full.papa@au.com"] = ["552 5.2.2 Mailbox full"]
    broadcast_to(school)
    broadcast_to(other)

    client.force_login(make_staff(Role.SCHOOL, school=school))
    page = client.get(reverse("console:undeliverable", args=[school.pk])).content.decode()
    assert page.index("見守 一郎") < page.index("見守 花子")  # by grade
    assert "go***@docomo.ne.jp" in page  # masked, as on the unconfirmed list
    assert "gone.mama" not in page
    assert "fu***@au.com" in page
    assert "552 5.2.2 Mailbox full" in page
    assert "el***" not in page  # another school's
    assert "fi***@au.com" not in page  # mail reaches it

    response = client.get(reverse("console:undeliverable_csv", args=[school.pk]))
    text = b"".join(response.streaming_content).decode()
    assert text.startswith('\ufeff"学年","組","児童氏名"')  # every cell quoted (csv_export)
    rows = text.strip().split("\r\n")[1:]
    assert [row.split(",")[2].strip('"') for row in rows] == ["見守 一郎", "見守 花子"]
    assert "届きません（送信を停止中）" in rows[1]
    assert "届かないことがあります" in rows[0]

    # Another school's staff get a 404, as for any page outside their scope.
    client.force_login(make_staff(Role.SCHOOL, school=other))
    assert client.get(reverse("console:undeliverable", args=[school.pk])).status_code == 404
    assert client.get(reverse("console:undeliverable_csv", args=[school.pk])).status_code == 404
    # The row links to the registrant's page.
    client.force_login(make_staff(Role.SCHOOL, school=school))
    assert reverse("console:registrant", args=[gone.pk]) in page


def test_each_mail_has_an_unpredictable_message_id_of_its_own_and_a_local_date(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["a@docomo.ne.jp"])
    make_registrant(school, ["b@docomo.ne.jp"])
    broadcast = broadcast_to(school, request_confirmation=True)
    assert send_reminder(broadcast, make_staff(Role.SCHOOL, school=school)) == 2
    run_until_quiet()

    ids = [
        str(m["Message-ID"])
        for address in ("a@docomo.ne.jp", "b@docomo.ne.jp")
        for m in smtp_sink.to(address)
    ]
    assert len(set(ids)) == 4  # the reminder is a new mail
    assert all(
        re.fullmatch(rf"<[a-z2-7]{{24}}@{re.escape(school.municipality.mail_domain)}>", i) for i in ids
    )
    assert all(str(m["Date"]).endswith("+0900") for _, m in smtp_sink.messages)


def test_a_bounce_for_an_address_nobody_holds_any_more_keeps_nothing(smtp_sink: Sink) -> None:
    school = make_school()
    registrant = make_registrant(school, ["old@docomo.ne.jp"])
    broadcast_to(school)
    (envelope,) = smtp_sink.envelope_senders["old@docomo.ne.jp"]
    set_addresses(registrant, ["new@docomo.ne.jp", "", "", ""])  # changed before the bounce came
    assert "address unregistered" in bounce(dsn("old@docomo.ne.jp"), envelope)
    assert not AddressFailure.objects.exists()
    assert status_of("new@docomo.ne.jp") == {AddressStatus.OK}

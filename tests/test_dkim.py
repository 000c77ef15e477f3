"""DKIM (issue 12): `mimamori dkim-keygen` makes a municipality's key, and from then on every
mail of its domain, of every kind, is signed so that dkimpy verifies it against the record the
command printed.

Mails go through the real paths (console, portal, tasks, the worker's code) to a real SMTP
sink; each is verified on the bytes the sink received, with the published record served to
dkimpy as DNS would serve it.
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastKind, Delivery, DeliveryStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.gates import passes, readers
from mimamori.mail import carriers, signing
from mimamori.mail.models import CarrierProfile, Charset, DkimKey, OutgoingMail, OutgoingStatus
from mimamori.maintenance import windows
from mimamori.maintenance.notices import due_notices
from mimamori.quakes.alerts import start_drill
from mimamori.quakes.models import EarthquakeSettings
from mimamori.receipts.reminders import send_reminder
from mimamori.registry import reachtests
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import Municipality, School
from mimamori.support.models import Inquiry
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db

RECORD = re.compile(r'(?P<name>\S+) TXT "(?P<value>v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*)"')
DnsFunc = Callable[..., bytes]


def keygen(municipality: Municipality, *args: str) -> list[str]:
    out = io.StringIO()
    call_command("dkim_keygen", "--municipality", municipality.code, *args, stdout=out)
    return out.getvalue().splitlines()


def published(*lines: str) -> DnsFunc:
    """dkimpy's DNS look-up, answering with the records exactly as the command printed them."""
    records = {}
    for line in lines:
        found = RECORD.fullmatch(line)
        assert found, line
        records[found["name"]] = found["value"].encode()

    def txt(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode().rstrip("."), b"")

    return txt


def signature(raw: bytes) -> dict[bytes, bytes]:
    """The tags of a mail's DKIM-Signature header (it has exactly one)."""
    headers, _body = dkim.rfc822_parse(raw)
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    assert len(values) == 1
    tags: dict[bytes, bytes] = dkim.util.parse_tag_value(values[0])
    return tags


def signed_headers(raw: bytes) -> list[bytes]:
    """The h= tag's header names, in order."""
    return re.sub(rb"\s", b"", signature(raw)[b"h"]).split(b":")


def subject(raw: bytes) -> str:
    return str(make_header(decode_header(message_from_bytes(raw)["Subject"])))


def test_every_kind_of_mail_is_signed_and_verifies_against_the_printed_record(smtp_sink: Sink) -> None:
    city = make_municipality("signed-city", support_email="desk@signed-city.example.jp")
    school = make_school(city, local="minami-es")
    lines = keygen(city)
    txt = published(lines[-1])

    # 登録完了メール ×3; the one to gone@ is refused for good, which suppresses that address and
    # tells the guardian at slot 1 (the address notice).
    smtp_sink.refusals["gone@docomo.ne.jp"] = ["550 5.1.1 User unknown"]
    registrant = make_registrant(school)
    set_addresses(registrant, ["mama@docomo.ne.jp", "gone@docomo.ne.jp", "papa@au.com", ""])
    run_until_quiet()
    # A broadcast with confirmation links and one-click unsubscribe, then a reminder.
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="不審者情報",
        body="下校時は複数で帰りましょう。",
        scope=resolve_scope(staff),
        request_confirmation=True,
    )
    sending.send(broadcast)
    run_until_quiet()
    assert send_reminder(broadcast, staff) == 1
    run_until_quiet()
    # A maintenance notice, at the municipality's lead time.
    centre = make_staff(Role.CENTRE)
    now = timezone.now()
    window = windows.plan(
        centre,
        starts_at=now + timedelta(days=5),
        ends_at=now + timedelta(days=5, hours=2),
        message="システム更新のため停止します。",
        municipality_codes=[city.code],
        now=now,
    )
    assert due_notices(now=window.starts_at - timedelta(hours=city.maintenance_notice_lead_hours)) == 1
    run_until_quiet()
    # An inquiry from the guardian: its copy to the desk, and the staff's answer.
    guardian = Client()
    guardian.force_login(registrant.account)
    form = {"name": "見守 花子", "reply_to": "", "subject": "届きません", "body": "メールが届きません。"}
    assert guardian.post(reverse("portal:inquiry"), form).status_code == 302
    run_until_quiet()
    desk = Client()
    desk.force_login(make_staff(Role.MUNICIPALITY, municipality=city))
    inquiry = Inquiry.objects.get()
    desk.post(reverse("console:inquiry", args=[inquiry.pk]), {"answer": "受信設定をご確認ください。"})
    run_until_quiet()
    # A 到達テスト of the school: every address but the suppressed one.
    reachtests.start(school, by=staff)
    run_until_quiet()
    # An earthquake drill: the support desk is told what guardians would get (quake_notice).
    EarthquakeSettings.objects.create(municipality=city, city_codes=["0121000"])
    start_drill(city, centre)
    run_until_quiet()
    # A gate pass (登下校メール): every slot but the suppressed one.
    registrant.tag_id = "04A1B2C3"
    registrant.save(update_fields=["tag_id"])
    reader, _token = readers.register(school, "正門", by=staff)
    passes.record(
        reader, [{"id": "1", "tag": "04A1B2C3", "direction": "out", "at": timezone.now().isoformat()}]
    )
    run_until_quiet()

    # Every kind went out, through the outbox or as a broadcast.
    assert set(OutgoingMail.objects.values_list("kind", "status")) == {
        ("registration_complete", OutgoingStatus.SENT),
        ("registration_complete", OutgoingStatus.FAILED),  # gone@, which no relay took
        ("address_suppressed", OutgoingStatus.SENT),
        ("inquiry_copy", OutgoingStatus.SENT),
        ("inquiry_acknowledgement", OutgoingStatus.SENT),
        ("inquiry_answer", OutgoingStatus.SENT),
        ("reach_test", OutgoingStatus.SENT),
        ("quake_notice", OutgoingStatus.SENT),
        ("gate_pass", OutgoingStatus.SENT),
    }
    assert set(Broadcast.objects.values_list("kind", flat=True)) == {
        BroadcastKind.ALERT,
        BroadcastKind.MAINTENANCE,
    }
    received = [raw for _to, raw in smtp_sink.raw]
    subjects = [subject(raw) for raw in received]
    assert "【再送】不審者情報" in subjects
    assert any(s.startswith("【メンテナンスのお知らせ】") for s in subjects)
    # 登録完了メール ×2 and the address notice, the broadcast and its reminder (slot 2 is
    # suppressed by then), the maintenance notice ×2 (slots 1 and 3), the inquiry's copy,
    # acknowledgement and answer, the 到達テスト ×2, the earthquake drill's notice to the desk,
    # the gate mail ×2.
    assert len(received) == 2 + 1 + 1 + 1 + 2 + 1 + 1 + 1 + 2 + 1 + 2

    # Each verifies against the printed record, signed by the municipality's domain.
    for raw, title in zip(received, subjects, strict=True):
        assert dkim.verify(raw, dnsfunc=txt), title
        tags = signature(raw)
        assert (tags[b"d"], tags[b"a"], tags[b"c"]) == (
            city.mail_domain.encode(),
            b"rsa-sha256",
            b"relaxed/relaxed",
        )
        signed = signed_headers(raw)
        assert {b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"} <= set(
            signed
        )
        if b"List-Unsubscribe:" in raw:  # RFC 8058: both headers signed
            assert {b"list-id", b"list-unsubscribe", b"list-unsubscribe-post"} <= set(signed)
    assert sum(b"List-Unsubscribe-Post:" in raw for raw in received) == 2  # the broadcast and its reminder


def broadcast_to(school: School, body: str = "本日は集団下校です。") -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(staff, subject="お知らせ", body=body, scope=resolve_scope(staff))
    sending.send(broadcast)
    run_until_quiet()
    return broadcast


def test_mail_of_a_domain_without_a_key_goes_unsigned_and_tampering_breaks_a_signature(
    smtp_sink: Sink,
) -> None:
    keyed, plain = make_municipality("keyed"), make_municipality("plain")
    txt = published(keygen(keyed)[-1])
    set_addresses(make_registrant(make_school(keyed)), ["keyed@docomo.ne.jp"])
    set_addresses(make_registrant(make_school(plain)), ["plain@docomo.ne.jp"])
    run_until_quiet()
    broadcast_to(keyed.schools.get())
    broadcast_to(plain.schools.get())

    assert all(b"DKIM-Signature" not in raw for raw in smtp_sink.raw_to("plain@docomo.ne.jp"))
    registration, mail = smtp_sink.raw_to("keyed@docomo.ne.jp")
    assert dkim.verify(registration, dnsfunc=txt)
    assert dkim.verify(mail, dnsfunc=txt)

    head, _, body = mail.partition(b"\r\n\r\n")
    changed = body[:10] + (b"A" if body[10:11] != b"A" else b"B") + body[11:]
    assert not dkim.verify(head + b"\r\n\r\n" + changed, dnsfunc=txt)
    assert not dkim.verify(mail.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=txt)
    # A second From, added on the way: each signed header is signed once more than it appears.
    added = head + b"\r\nFrom: attacker@example.com\r\n\r\n" + body
    assert not dkim.verify(added, dnsfunc=txt)
    # Signed, as every mail, over the bytes sent: the sink's parser sees the same mail.
    (parsed,) = [m for m in smtp_sink.to("keyed@docomo.ne.jp") if "お知らせ" in str(m["Subject"])]
    assert "本日は集団下校です。" in str(parsed.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_the_command_prints_the_record_last_stores_the_key_and_audits(capsys: Any) -> None:
    city = make_municipality("key-city")
    lines = keygen(city)
    key = DkimKey.objects.get()
    assert (key.domain, key.retired_at) == ("mail.key-city.example.jp", None)
    assert re.fullmatch(r"mimamori\d{6}", key.selector)
    assert (
        lines[-1]
        == f'{key.selector}._domainkey.mail.key-city.example.jp TXT "v=DKIM1; k=rsa; p={key.public_key}"'
    )
    public = serialization.load_der_public_key(base64.b64decode(key.public_key))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    # The private key is stored, and printed nowhere.
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    out = "\n".join(lines) + capsys.readouterr().err
    assert "PRIVATE" not in out
    assert key.private_key.splitlines()[5] not in out
    assert "PRIVATE" not in repr(key) + str(key)
    event = AuditEvent.objects.get(action="dkim.key_created")
    assert (event.target, event.municipality, event.details["selector"]) == (
        "municipality key-city",
        city,
        key.selector,
    )
    assert key.private_key[40:80] not in str(event.details)

    with pytest.raises(CommandError, match="No municipality"):
        call_command("dkim_keygen", "--municipality", "nowhere", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already has a key"):
        keygen(city, "--selector", key.selector)
    with pytest.raises(CommandError, match="not a selector"):
        keygen(city, "--selector", "Bad_Selector")
    assert DkimKey.objects.count() == 1


def test_a_new_key_replaces_the_old_one_at_once_and_the_old_record_stays_listed(smtp_sink: Sink) -> None:
    city = make_municipality("rotating")
    school = make_school(city)
    set_addresses(make_registrant(school), ["mama@docomo.ne.jp"])
    first = keygen(city)[-1]
    broadcast_to(school, "一通目")
    second_lines = keygen(city)
    assert any("keep" in line and "published" in line for line in second_lines[:-1])
    second = second_lines[-1]
    broadcast_to(school, "二通目")

    old, new = DkimKey.objects.order_by("created_at", "pk")
    assert new.selector == old.selector + "-2"  # the default selector of the same month, again
    assert old.retired_at is not None
    assert old.private_key == ""  # nothing needs the private half of a replaced key
    assert new.retired_at is None
    registration, one, two = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert signature(one)[b"s"] == old.selector.encode()
    assert signature(two)[b"s"] == new.selector.encode()
    # Mail signed with the old key still verifies while its record stays published.
    assert dkim.verify(one, dnsfunc=published(first, second))
    assert dkim.verify(two, dnsfunc=published(first, second))
    assert dkim.verify(registration, dnsfunc=published(first, second))


def test_our_signature_is_the_one_dkimpy_makes_only_sooner() -> None:
    """Signer does the RSA step with OpenSSL; everything else, and the result, is dkimpy's."""
    city = make_municipality("same-city")
    keygen(city)
    signer = signing.signer_for(city.mail_domain)
    assert signer is not None
    assert signer.fast
    key = DkimKey.objects.get()
    message = (
        b"From: =?utf-8?b?56ys5LiA5bCP5a2m5qCh?= <school@mail.same-city.example.jp>\r\n"
        b"To: mama@docomo.ne.jp\r\nSubject: test\r\nDate: Tue, 01 Dec 2026 09:00:00 +0900\r\n"
        b"Message-ID: <1@mail.same-city.example.jp>\r\nMIME-Version: 1.0\r\n"
        b"List-Unsubscribe: <https://example.jp/u/x/>\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        b"\r\n44GT44KM44Gv6Kmm6aiT44Gn44GZ44CCCg==\r\n"
    )
    for _ in range(3):
        now = int(time.time())
        ours = signer.sign(message, now=now)
        theirs = dkim.sign(
            message,
            key.selector.encode(),
            key.domain.encode(),
            key.private_key.encode(),
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=signed_headers(ours),
        )
        if int(time.time()) == now:
            break
    assert ours == theirs + message


def test_a_key_that_cannot_be_used_fails_each_mail_visibly_and_strands_none(
    smtp_sink: Sink, settings: Any
) -> None:
    settings.MIMAMORI_RETRY_MAX_ATTEMPTS = 2
    city = make_municipality("broken-key")
    school = make_school(city)
    keygen(city)
    DkimKey.objects.update(private_key="-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    signing.forget()
    set_addresses(make_registrant(school), ["mama@docomo.ne.jp"])
    run_until_quiet()
    broadcast = broadcast_to(school)

    assert smtp_sink.copies() == {}  # nothing unsigned went out instead
    mail = OutgoingMail.objects.get()
    assert (mail.status, mail.attempts) == (OutgoingStatus.FAILED, 2)
    assert mail.reply.startswith("internal error: the DKIM key mimamori")
    assert "cannot be used" in mail.reply
    delivery = Delivery.objects.get(broadcast=broadcast)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.reply.startswith("internal error: the DKIM key mimamori")


def test_mail_written_in_iso_2022_jp_is_signed_over_the_bytes_that_leave(smtp_sink: Sink) -> None:
    CarrierProfile.objects.filter(name="docomo").update(charset=Charset.ISO2022JP)
    carriers.forget()
    city = make_municipality("jis-city")
    school = make_school(city)
    txt = published(keygen(city)[-1])
    registrant = make_registrant(school)
    set_addresses(registrant, ["mama@docomo.ne.jp", "", "", ""])  # a 登録完了メール
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject="① 不審者情報", body="髙橋さん宅付近 ～ 公園", scope=resolve_scope(staff)
    )
    sending.send(broadcast)
    run_until_quiet()

    received = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert len(received) == 2
    for raw in received:
        assert b'charset="ISO-2022-JP"' in raw or b"charset=ISO-2022-JP" in raw
        assert dkim.verify(raw, dnsfunc=txt)

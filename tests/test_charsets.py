"""Character sets per carrier profile (issue 12, item 5): mail to a group whose profile says
ISO-2022-JP is written in it, its text substituted safely first (mail/charsets.py), never with a
``?``; other groups keep UTF-8; staff see what would change before they send.

Through the real paths: broadcasts, reminders, maintenance notices and outbox mail sent to a real
SMTP sink, read back from the bytes it received.
"""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.mail import charsets
from mimamori.mail.models import CarrierProfile, Charset, OutgoingMail
from mimamori.maintenance import windows
from mimamori.maintenance.notices import due_notices
from mimamori.receipts.confirming import find_delivery
from mimamori.receipts.reminders import send_reminder
from mimamori.registry.addresses import set_addresses
from mimamori.registry.models import School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks, run_until_quiet
from tests.test_api import Api

pytestmark = pytest.mark.django_db

SUBJECT = "①集合場所の変更：北小学校付近で声かけ事案が発生しました～下校時は複数で帰宅を"
BODY = (
    "①本日15時～16時、㈱ミマモリ前で不審者が目撃されました。\n"
    "ﾊﾝｶｸ文字と髙橋さん宅の前も通らないでください🚨\n"
)
LINK = re.compile(r"http://\S+/c/([0-9a-f]+)/")
UNSUBSCRIBE = re.compile(r"<(http://\S+/u/\S+/)>")


def docomo_writes(charset: str) -> None:
    CarrierProfile.objects.filter(name="docomo").update(charset=charset)


def header(raw: bytes, name: str) -> str:
    """A header as the reader sees it, decoded (the sink's parser keeps spaces between words)."""
    value = message_from_bytes(raw)[name]
    return str(make_header(decode_header(str(value))))


def text(raw: bytes) -> str:
    """The body as a phone shows it: decoded with the charset it names, lines ended by \\n."""
    mail: Message = message_from_bytes(raw)
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(mail.get_content_charset() or "ascii").replace("\r\n", "\n")


def assert_iso_2022_jp(raw: bytes) -> None:
    mail = message_from_bytes(raw)
    assert mail["Content-Type"] == 'text/plain; charset="ISO-2022-JP"'
    assert mail["Content-Transfer-Encoding"] == "7bit"
    assert raw.isascii(), "7-bit through and through"
    assert mail["MIME-Version"] == "1.0"
    head = raw.partition(b"\r\n\r\n")[0]
    assert re.search(rb"^Subject: =\?ISO-2022-JP\?B\?", head, re.MULTILINE)
    assert re.search(rb"^From: =\?ISO-2022-JP\?B\?", head, re.MULTILINE)
    assert b"?utf-8?" not in head.lower()
    # ASCII and JIS X 0208 only (RFC 1468): no JIS X 0201 Roman, no JIS C 6226-1978.
    assert b"\x1b(J" not in raw
    assert b"\x1b$@" not in raw


def broadcast_to(school: School, *, confirmation: bool = True) -> tuple[User, Broadcast]:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject=SUBJECT,
        body=BODY,
        scope=resolve_scope(staff, school_ids=[school.pk]),
        urgent=True,
        request_confirmation=confirmation,
    )
    assert sending.send(broadcast)
    run_until_quiet()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.SENT
    return staff, broadcast


# --- the substitution ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("①②⑩⑳", "(1)(2)(10)(20)"),
        ("㈱㈲㈹", "(株)(有)(代)"),
        ("髙橋 﨑山 德川 𠮷野 栁田 濵田", "高橋 崎山 徳川 吉野 柳田 濱田"),
        ("9時～10時", "9時〜10時"),  # U+FF5E (Windows) → U+301C (JIS X 0208 as Python maps it)
        ("9時〜10時", "9時〜10時"),  # already the JIS one
        ("－＼∥￠￡￢—", "−＼‖¢£¬―"),
        ("¥500", "￥500"),
        ("ﾐﾏﾓﾘ ｶﾞｯｺｳ･ﾆｭｰｽ", "ミマモリ ガッコウ・ニュース"),
        ("Ⅲ ⅳ ㍻ ㎝ ㎡ № ℡ ㊤ 〝引用〟", "III iv 平成 cm m2 No. TEL (上) “引用”"),
        ("10–12", "10-12"),
        ("Café", "Cafe"),
        ("ありがとう♡", "ありがとう〓"),
        ("⚠️注意 🚨 👨‍👩‍👧 🇯🇵", "〓注意 〓 〓 〓"),
        ("1️⃣ 集合", "(1) 集合"),
        ("か\u3099\u200bき\ufeff", "がき"),  # composed; invisible marks dropped
        ("a\x1bb\x0ec\x0fd", "abcd"),  # ESC, SO and SI would switch the decoder's state
        ("한글 彅", "〓〓 〓"),
        ("https://example.jp/c/0123abcd/ ?q=1", "https://example.jp/c/0123abcd/ ?q=1"),
    ],
)
def test_text_is_substituted_safely_for_iso_2022_jp(typed: str, sent: str) -> None:
    written = charsets.substitute(typed)
    assert written == sent
    assert charsets.fits(written)
    assert written.encode("iso2022_jp").decode("iso2022_jp") == written
    assert written.count("?") == typed.count("?"), "never a ? of our own"


def test_everything_windows_and_phones_type_comes_out_as_iso_2022_jp_without_a_question_mark() -> None:
    # CP932 (Windows-31J) as a whole: JIS X 0208, half-width katakana, NEC row 13, the IBM
    # extensions and the user-defined area (外字).
    typed = set()
    for lead in range(0xA1, 0xE0):
        typed.add(bytes([lead]).decode("cp932"))
    for first in [*range(0x81, 0xA0), *range(0xE0, 0xFD)]:
        for second in range(0x40, 0xFD):
            try:
                typed.add(bytes([first, second]).decode("cp932"))
            except UnicodeDecodeError:
                continue
    assert len(typed) > 9000
    text = "".join(sorted(typed))
    written = charsets.substitute(text)
    assert charsets.fits(written)
    assert "?" not in written
    outside = [character for character in typed if not charsets.fits(character)]
    substituted = [c for c in outside if charsets.substitute(c) != charsets.GETA]
    assert len(substituted) >= 200, "row 13, the CP932 mappings, half-width kana, variant kanji"


def test_what_would_change_is_listed_once_each_and_only_when_visible() -> None:
    assert charsets.changes("①と①と㈱、～。か\u3099\u200b") == [("①", "(1)"), ("㈱", "(株)"), ("～", "〜")]
    assert charsets.changes("普通の文面です。〜") == []
    assert charsets.changes("①", charsets.UTF8) == []


def test_long_lines_are_broken_where_a_relay_would_not_break_an_escape() -> None:
    long = "あ" * 700 + "\n" + "a漢" * 400 + "\n短い行\n"
    written = charsets.body_text(long, charsets.ISO2022JP)
    lines = written.encode("iso2022_jp").split(b"\n")
    assert max(len(line) for line in lines) <= charsets.LINE_OCTETS
    assert written.replace("\n", "") == long.replace("\n", "")
    assert charsets.body_text(long, charsets.UTF8) == long


# --- mail through the sink ----------------------------------------------------------------


def test_a_broadcast_arrives_in_iso_2022_jp_at_docomo_and_in_utf_8_at_gmail(smtp_sink: Sink) -> None:
    docomo_writes(Charset.ISO2022JP)
    school = make_school(make_municipality("kita", name="岩見沢市"), name="髙﨑小学校", local="takasaki-es")
    make_registrant(school, ["mama@docomo.ne.jp", "papa@gmail.com"], child_name="髙橋 太郎")
    for number in range(3):  # enough for the shortcut to build most of them
        make_registrant(school, [f"guardian{number}@docomo.ne.jp"])
    _staff, broadcast = broadcast_to(school)

    raw = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert len(raw) == 1
    assert_iso_2022_jp(raw[0])
    assert header(raw[0], "Subject") == "【緊急】" + charsets.substitute(SUBJECT)
    assert header(raw[0], "Subject").startswith("【緊急】(1)集合場所の変更")
    assert header(raw[0], "From") == f"高崎小学校 <takasaki-es@{school.municipality.mail_domain}>"
    docomo = text(raw[0])
    assert charsets.substitute(BODY) in docomo
    assert "(1)本日15時〜16時、(株)ミマモリ前" in docomo
    assert "ハンカク文字と高橋さん宅の前も通らないでください〓" in docomo
    assert "高崎小学校 3年1組 高橋 太郎 さん" in docomo
    assert "?" not in docomo, "no ? introduced"
    assert "?" not in header(raw[0], "Subject")
    # The ASCII links survive, and still find this mail.
    token = LINK.search(docomo)
    assert token is not None
    delivery = find_delivery(token.group(1))
    assert delivery is not None
    assert delivery.email == "mama@docomo.ne.jp"
    unsubscribe = UNSUBSCRIBE.search(str(message_from_bytes(raw[0])["List-Unsubscribe"]))
    assert unsubscribe is not None
    assert "/u/" in unsubscribe.group(1)

    for number in range(3):  # the rest of the group too, whichever way each was built
        (other,) = smtp_sink.raw_to(f"guardian{number}@docomo.ne.jp")
        assert_iso_2022_jp(other)
        assert charsets.substitute(BODY) in text(other)

    gmail = smtp_sink.raw_to("papa@gmail.com")[0]
    mail = message_from_bytes(gmail)
    assert mail.get_content_charset() == "utf-8"
    assert mail["Content-Transfer-Encoding"] == "base64"
    assert header(gmail, "Subject") == "【緊急】" + SUBJECT
    assert BODY in text(gmail)
    assert "髙橋 太郎" in text(gmail)
    assert broadcast.message_count == 5


def test_everything_stays_utf_8_while_no_profile_asks_for_iso_2022_jp(smtp_sink: Sink) -> None:
    school = make_school(name="北小学校", local="kita-es")
    make_registrant(school, ["mama@docomo.ne.jp"])
    broadcast_to(school, confirmation=False)
    (raw,) = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert message_from_bytes(raw).get_content_charset() == "utf-8"
    assert BODY in text(raw)


def test_a_reminder_and_a_maintenance_notice_honour_the_profile(smtp_sink: Sink) -> None:
    docomo_writes(Charset.ISO2022JP)
    city = make_municipality("kita", name="岩見沢市", maintenance_notice_lead_hours=24)
    school = make_school(city, name="髙﨑小学校", local="takasaki-es")
    make_registrant(school, ["mama@docomo.ne.jp", "papa@gmail.com"])
    staff, broadcast = broadcast_to(school)

    assert send_reminder(broadcast, staff) == 2
    run_until_quiet()
    first, again = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert_iso_2022_jp(again)
    assert header(again, "Subject") == "【再送】【緊急】" + charsets.substitute(SUBJECT)
    assert "まだ受信確認がお済みでない" in text(again)
    link = LINK.search(text(again))
    assert link is not None
    assert link.group(0) in text(first)
    assert message_from_bytes(smtp_sink.raw_to("papa@gmail.com")[1]).get_content_charset() == "utf-8"

    now = timezone.now()
    window = windows.plan(
        make_staff(Role.CENTRE),
        starts_at=now + timedelta(days=2),
        ends_at=now + timedelta(days=2, hours=2),
        message="システム更新のため停止します①",
        municipality_codes=[city.code],
        now=now,
    )
    assert due_notices(now=window.starts_at - timedelta(hours=24)) == 1
    run_until_quiet()
    notice = smtp_sink.raw_to("mama@docomo.ne.jp")[2]
    assert_iso_2022_jp(notice)
    assert header(notice, "Subject").startswith("【メンテナンスのお知らせ】")
    assert "システム更新のため停止します(1)" in text(notice)
    assert message_from_bytes(smtp_sink.raw_to("papa@gmail.com")[2]).get_content_charset() == "utf-8"


def test_the_registration_complete_mail_honours_the_profile(smtp_sink: Sink) -> None:
    docomo_writes(Charset.ISO2022JP)
    school = make_school(name="髙﨑小学校", local="takasaki-es")
    registrant = make_registrant(school, ["old@docomo.ne.jp"], child_name="髙橋 花子")
    set_addresses(registrant, ["mama@docomo.ne.jp", "papa@gmail.com"])
    run_queued_tasks()  # the registry's task posts it to the outbox, written in the group's charset
    assert OutgoingMail.objects.filter(kind="registration_complete", status="sent").count() == 2

    (raw,) = smtp_sink.raw_to("mama@docomo.ne.jp")
    assert_iso_2022_jp(raw)
    assert header(raw, "Subject") == "【高崎小学校】登録完了メール（メールアドレスを登録しました）"
    docomo = text(raw)
    assert "高崎小学校 3年1組 高橋 花子 さん" in docomo
    assert "?" not in docomo
    assert "/portal/" in docomo
    (gmail,) = smtp_sink.raw_to("papa@gmail.com")
    assert message_from_bytes(gmail).get_content_charset() == "utf-8"
    assert "髙橋 花子" in text(gmail)


# --- the composer -------------------------------------------------------------------------


def preview(text: str = BODY) -> str:
    school = make_school(name="北小学校", local="kita-es")
    make_registrant(school, ["mama@docomo.ne.jp"])
    client = Client()
    client.force_login(
        make_staff(Role.SCHOOL, school=school), backend="django.contrib.auth.backends.ModelBackend"
    )
    composed = client.post(reverse("console:broadcast_new"), {"subject": "不審者情報", "body": text})
    assert composed.status_code == 302
    return str(client.get(composed["Location"]).content.decode())


def test_the_preview_warns_what_iso_2022_jp_would_change_before_sending() -> None:
    docomo_writes(Charset.ISO2022JP)
    page = preview()
    assert "ドコモ あてのメールは文字コード ISO-2022-JP で送る" in page
    assert "「①」→「(1)」" in page
    assert "「～」→「〜」" in page
    assert "「㈱」→「(株)」" in page
    assert "「髙」→「高」" in page
    assert "「🚨」→「〓」" in page
    send = reverse("console:broadcast_send", args=[Broadcast.objects.get().pk])
    assert page.index("「①」→「(1)」") < page.index(f'action="{send}"'), "before the send button"


def test_the_preview_warns_of_nothing_when_nothing_would_change() -> None:
    assert "ISO-2022-JP" not in preview()  # every group writes UTF-8
    docomo_writes(Charset.ISO2022JP)
    assert "ISO-2022-JP" not in preview("普通の文面です。9時〜10時")


def test_the_api_tells_what_a_profile_would_change() -> None:
    school = make_school(name="北小学校", local="kita-es")
    api = Api(make_staff(Role.SCHOOL, school=school))
    draft = {"scope": {}, "subject": "不審者情報", "body": "①集合", "request_confirmation": False}
    assert api.post("/broadcasts", draft).json()["rewritings"] == []
    docomo_writes(Charset.ISO2022JP)
    CarrierProfile.objects.filter(name="au").update(charset=Charset.ISO2022JP)
    created = api.post("/broadcasts", draft).json()
    expected = [
        {"groups": ["ドコモ", "au"], "charset": "ISO-2022-JP", "changes": [{"typed": "①", "sent": "(1)"}]}
    ]
    assert created["rewritings"] == expected
    assert api.get(f"/broadcasts/{created['id']}").json()["rewritings"] == expected

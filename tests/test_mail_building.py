"""BroadcastMail's shortcut gives, byte for byte, the mail Django builds the ordinary way, in each
character set; every kind of mail starts a long Japanese Subject's encoded words on its first line."""

from __future__ import annotations

import random
import re
from email import message_from_bytes
from email.header import decode_header, make_header
from email.utils import parseaddr
from typing import Any

import pytest

from mimamori.broadcasts import mails as broadcast_mails
from mimamori.mail import charsets, messages
from mimamori.registry import mails as registry_mails
from mimamori.support import mails as support_mails
from mimamori.support.models import Inquiry
from tests.cast import make_municipality, make_registrant, make_school

pytestmark = pytest.mark.django_db

DATE = re.compile(rb"^Date: .*$", re.MULTILINE)
# Long enough that the encoded Subject takes several lines, with characters ISO-2022-JP has not.
LONG_SUBJECT = "不審者情報：①北小学校付近で声かけ事案が発生しました。下校時は複数で帰宅してください～"


def header_lines(content: bytes, name: str) -> list[bytes]:
    """The lines of header ``name``: its first line and the folded ones after it."""
    head = content.partition(b"\r\n\r\n")[0].split(b"\r\n")
    start = next(n for n, line in enumerate(head) if line.startswith(name.encode() + b": "))
    lines = [head[start]]
    for line in head[start + 1 :]:
        if not line.startswith(b" "):
            break
        lines.append(line)
    return lines


def decoded(content: bytes, name: str) -> str:
    """The header as a reader sees it (RFC 2047: the space between encoded words is no text)."""
    value = b"\r\n".join(header_lines(content, name)).decode("ascii").partition(": ")[2]
    return str(make_header(decode_header(value)))


@pytest.mark.parametrize("charset", [charsets.UTF8, charsets.ISO2022JP])
def test_every_mail_equals_the_ordinary_build_apart_from_its_date(charset: str) -> None:
    pick = random.Random(6)
    # Names as schools have them; the third school's From header is long enough to be folded,
    # which the shortcut now learns like any header that is the same in all of a school's mails.
    schools = [
        make_school(make_municipality("kita"), name="北小学校", local="kita-es"),
        make_school(make_municipality("minami"), name="髙﨑中学校", local="minami-jh"),
        make_school(make_municipality("nishi"), name="長い名前の" * 8 + "小学校", local="nishi"),
    ]
    children = [
        make_registrant(pick.choice(schools), child_name=name, grade=pick.randint(1, 6), class_name=klass)
        for name, klass in [
            ("見守 太郎", "1"),
            ("髙橋 花子", "2"),
            ("O'Brien ジョン", "さくら"),
            ("佐藤 ﾊｼﾞﾒ", "3"),
        ]
    ]
    addresses = [
        "a@docomo.ne.jp",
        "a..b@docomo.ne.jp",
        "x.@ezweb.ne.jp",
        "long" * 20 + "@au.com",
        "q+1@i.softbank.jp",
    ]
    mails = broadcast_mails.BroadcastMail(
        subject=LONG_SUBJECT, body="本文です①～。\n.先頭のドット\n" * 3 + "長い行" * 400, urgent=True
    )
    for n in range(120):
        school = pick.choice(schools)
        named = pick.sample(children, pick.randint(1, 3))
        values: dict[str, Any] = {
            "school": school,
            "to": pick.choice(addresses),
            "children": named,
            "message_id": f"<broadcast1.{n}@{school.municipality.mail_domain}>",
            "confirmation_url": pick.choice([None, f"https://example.jp/c/{n:060d}/"]),
            "reminder": pick.random() < 0.3,
            "unsubscribe_url": pick.choice([None, f"https://example.jp/u/{n:026d}/"]),
        }
        fast = mails.as_bytes(**values, charset=charset)
        ordinary = broadcast_mails.broadcast(subject=mails.subject, body=mails.body, urgent=True, **values)
        expected = messages.as_bytes(ordinary, charset)
        assert DATE.sub(b"Date: -", fast) == DATE.sub(b"Date: -", expected), values
    assert mails._frames, "the body shortcut was taken"
    assert all(mails._frames.values())
    if charset != charsets.UTF8:
        assert mails._written_frames
        assert all(mails._written_frames.values())
    # Every school's header block was learnt (folded Subject and From lines included), except
    # for the address too long for one line, which always takes the ordinary way.
    assert mails._heads
    assert all(mails._heads.values()), "the header shortcut was taken for every school"
    assert {key[0] for key in mails._heads} == {school.pk for school in schools}
    assert any(head and b"\0List-Unsubscribe" in head for head in mails._heads.values()), (
        "the shortcut fills the unsubscribe link too"
    )


@pytest.mark.parametrize("charset", [charsets.UTF8, charsets.ISO2022JP])
def test_a_long_japanese_subject_starts_on_the_subject_line_in_every_kind_of_mail(charset: str) -> None:
    city = make_municipality("kita", name="岩見沢市", support_name="岩見沢市 児童見守りシステム サポート窓口")
    school = make_school(city, name="岩見沢市立 北小学校 ①", local="kita-es")
    registrant = make_registrant(school, ["mama@docomo.ne.jp"], child_name="髙橋 太郎")
    inquiry = Inquiry.objects.create(
        municipality=city,
        registrant=registrant,
        name="髙橋 花子",
        reply_to="mama@docomo.ne.jp",
        subject="登録したメールアドレスに一斉配信メールが届かなくなりました～どうすればよいですか",
        body="よろしくお願いします。",
        answer="受信設定をご確認ください。",
    )
    mails = {
        "broadcast": broadcast_mails.broadcast(
            school=school,
            to="mama@docomo.ne.jp",
            subject=LONG_SUBJECT,
            body="本文",
            urgent=True,
            children=[registrant],
            message_id="<b.1@example.jp>",
            reminder=True,
        ),
        "registration_complete": registry_mails.registration_complete(registrant, 1, "mama@docomo.ne.jp"),
        "address_suppressed": registry_mails.address_suppressed(
            registrant, 2, "papa@docomo.ne.jp", 1, "mama@docomo.ne.jp"
        ),
        "inquiry_copy": support_mails.inquiry_copy(inquiry),
        "inquiry_answer": support_mails.inquiry_answer(inquiry, "mama@docomo.ne.jp"),
    }
    for kind, mail in mails.items():
        content = messages.as_bytes(mail, charset)
        word = {charsets.UTF8: b"=?utf-8?b?", charsets.ISO2022JP: b"=?ISO-2022-JP?B?"}[charset]
        subject = header_lines(content, "Subject")
        assert subject[0].startswith(b"Subject: " + word), (kind, subject)
        assert len(subject) > 1, f"{kind}: a subject long enough to be folded"
        assert all(line.startswith(b" " + word) for line in subject[1:]), (kind, subject)
        sender = header_lines(content, "From")
        assert sender[0].startswith(b"From: " + word), (kind, sender)
        head = content.partition(b"\r\n\r\n")[0].split(b"\r\n")
        assert all(len(line) <= messages.LINE_LIMIT for line in head), (kind, head)
        expected = charsets.written(str(mail.subject), charset)
        assert decoded(content, "Subject") == expected, kind
        name, address = parseaddr(str(mail.from_email))
        assert decoded(content, "From") == f"{charsets.written(name, charset)} <{address}>", kind
        assert message_from_bytes(content).get_content_charset() == charset, kind
        if charset == charsets.ISO2022JP:
            assert "(1)" in expected or "〜" in expected or "高橋" in expected, kind
            assert "?" not in decoded(content, "Subject") + decoded(content, "From"), kind


def test_an_encoded_word_never_splits_a_character() -> None:
    # Each word decodes on its own: no character is cut between two words, in either charset.
    text = "あ" * 30 + "𠮷野家のa" * 10 + "髙"
    for charset in (charsets.UTF8, charsets.ISO2022JP):
        written = charsets.written(text, charset)
        lines = messages.encoded_words(written, charset, len("Subject: "))
        assert len("Subject: ") + len(lines[0]) <= messages.LINE_LIMIT
        assert all(len(line) <= messages.LINE_LIMIT for line in lines)
        words = [str(make_header(decode_header(line.strip()))) for line in lines]
        assert "".join(words) == written

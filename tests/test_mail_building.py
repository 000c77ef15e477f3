"""BroadcastMail's shortcut gives, byte for byte, the mail Django builds the ordinary way."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from mimamori.broadcasts import mails as messages
from tests.cast import make_municipality, make_registrant, make_school

pytestmark = pytest.mark.django_db

DATE = re.compile(rb"^Date: .*$", re.MULTILINE)


def test_every_mail_equals_the_ordinary_build_apart_from_its_date() -> None:
    pick = random.Random(6)
    # Names as schools have them; a From header long enough to be folded (the third school)
    # always takes the ordinary way.
    schools = [
        make_school(make_municipality("kita"), name="北小学校", local="kita-es"),
        make_school(make_municipality("minami"), name="南中学校", local="minami-jh"),
        make_school(make_municipality("nishi"), name="長い名前の" * 8 + "小学校", local="nishi"),
    ]
    children = [
        make_registrant(pick.choice(schools), child_name=name, grade=pick.randint(1, 6), class_name=klass)
        for name, klass in [
            ("見守 太郎", "1"),
            ("見守 花子", "2"),
            ("O'Brien ジョン", "さくら"),
            ("佐藤 一", "3"),
        ]
    ]
    addresses = [
        "a@docomo.ne.jp",
        "a..b@docomo.ne.jp",
        "x.@ezweb.ne.jp",
        "long" * 20 + "@au.com",
        "q+1@i.softbank.jp",
    ]
    mails = messages.BroadcastMail(
        subject="【緊急】不審者情報", body="本文です。\n.先頭のドット\n" * 3, urgent=True
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
        fast = mails.as_bytes(**values)
        ordinary = messages.broadcast(subject=mails.subject, body=mails.body, urgent=True, **values)
        expected = ordinary.message().as_bytes(linesep="\r\n")
        assert DATE.sub(b"Date: -", fast) == DATE.sub(b"Date: -", expected), values
    assert any(mails._frames.values()), "the body shortcut was taken"
    assert any(mails._heads.values()), "the header shortcut was taken"
    assert any(head and b"\0List-Unsubscribe" in head for head in mails._heads.values()), (
        "the shortcut fills the unsubscribe link too"
    )

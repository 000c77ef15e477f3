"""Demo data for `mimamori run --demo`: the seed's three municipalities, their schools,
a few hundred registrants, and staff and guardian logins with a known password.

Everything is generated from a fixed seed, so every demo looks the same. The password
``mimamori-demo`` is for demonstrations only: never load this into a production database.

The addresses use the real carrier and PC mail domains (docomo.ne.jp, gmail.com, …) because
the address rules and the guardian help talk about exactly those; the local parts are made up
and may still belong to someone. That is safe only while mail goes to the built-in
development mailbox, which captures everything: `mimamori run --demo` refuses a real relay.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.registry import alert_templates
from mimamori.registry.models import (
    Address,
    Municipality,
    Registrant,
    RegistrantStatus,
    School,
    hash_registration_code,
    new_registration_code,
)

DEMO_PASSWORD = "mimamori-demo"  # noqa: S105 (demo only, printed on start)
GUARDIAN_LOGIN_ID = "10000001"
PENDING_LOGIN_ID = "10000002"
# Fixed so that a second `run --demo` can print it again; the alphabet avoids 0/O and 1/I/L.
PENDING_REGISTRATION_CODE = "DEMA-2345-6789"
SEED = 20250401

# code, name, mail domain, support phone (0120-000-xxx: fictional), confirmation links,
# broadcast slots, maintenance notice lead hours, schools (name, sender local part, classes, size)
MUNICIPALITIES = [
    (
        "iwamizawa", "岩見沢市", "mail.mimamori-iwamizawa.jp", "0120-000-101", True, [1, 2], 72,
        [
            ("岩見沢市立緑小学校", "midori-sho", 3, 50),
            ("岩見沢市立東小学校", "higashi-sho", 3, 45),
            ("岩見沢市立北本町小学校", "kitahoncho-sho", 2, 35),
            ("岩見沢市立南小学校", "minami-sho", 2, 35),
        ],
    ),
    (
        "takikawa", "滝川市", "mail.mimamori-takikawa.jp", "0120-000-102", True, [1, 2, 3], 48,
        [
            ("滝川市立江部乙小学校", "ebeotsu-sho", 2, 30),
            ("滝川市立西小学校", "nishi-sho", 3, 40),
            ("滝川市立東栄小学校", "toei-sho", 2, 30),
        ],
    ),
    (
        "yubari", "夕張市", "mail.mimamori-yubari.jp", "0120-000-103", False, [1, 2, 3, 4], 96,
        [
            ("夕張市立夕張小学校", "yubari-sho", 2, 25),
            ("夕張市立清水沢小学校", "shimizusawa-sho", 1, 15),
            ("夕張市立若菜小学校", "wakana-sho", 1, 15),
        ],
    ),
]  # fmt: skip


# The seed's municipalities differ visibly (S12): slots above, and the desk's hours here.
SUPPORT_HOURS = {"yubari": "平日 8:45〜17:30（土日祝・年末年始を除く）"}


def _names(text: str) -> list[tuple[str, str, str]]:
    return [(kanji, kana, latin) for kanji, kana, latin in (entry.split(":") for entry in text.split())]


SURNAMES = _names(
    "佐藤:さとう:sato 鈴木:すずき:suzuki 高橋:たかはし:takahashi 田中:たなか:tanaka 伊藤:いとう:ito "
    "渡辺:わたなべ:watanabe 山本:やまもと:yamamoto 中村:なかむら:nakamura 小林:こばやし:kobayashi "
    "加藤:かとう:kato 吉田:よしだ:yoshida 山田:やまだ:yamada 佐々木:ささき:sasaki 山口:やまぐち:yamaguchi "
    "松本:まつもと:matsumoto 井上:いのうえ:inoue 木村:きむら:kimura 林:はやし:hayashi 斎藤:さいとう:saito "
    "清水:しみず:shimizu 山崎:やまざき:yamazaki 森:もり:mori 池田:いけだ:ikeda 橋本:はしもと:hashimoto "
    "阿部:あべ:abe 石川:いしかわ:ishikawa 中島:なかじま:nakajima 小川:おがわ:ogawa 前田:まえだ:maeda "
    "岡田:おかだ:okada 藤田:ふじた:fujita 後藤:ごとう:goto 村上:むらかみ:murakami 遠藤:えんどう:endo "
    "青木:あおき:aoki 工藤:くどう:kudo 菊地:きくち:kikuchi 千葉:ちば:chiba "
    "高田:たかだ:takada 三浦:みうら:miura"
)
GIVEN_NAMES = _names(
    "蓮:れん:ren 陽翔:はると:haruto 湊:みなと:minato 蒼:あおい:aoi 樹:いつき:itsuki 悠真:ゆうま:yuma "
    "大翔:ひろと:hiroto 陽太:ようた:yota 朝陽:あさひ:asahi 颯真:そうま:soma 律:りつ:ritsu 悠人:ゆうと:yuto "
    "大和:やまと:yamato 陸:りく:riku 奏太:そうた:sota 健太:けんた:kenta "
    "翔太:しょうた:shota 拓海:たくみ:takumi "
    "陽葵:ひまり:himari 凛:りん:rin 詩:うた:uta 結菜:ゆいな:yuina 芽依:めい:mei 紬:つむぎ:tsumugi "
    "さくら:さくら:sakura 結愛:ゆあ:yua 莉子:りこ:riko 美咲:みさき:misaki 心春:こはる:koharu 杏:あん:an "
    "澪:みお:mio 彩花:あやか:ayaka 花:はな:hana 楓:かえで:kaede 美月:みづき:mizuki 千尋:ちひろ:chihiro"
)
# Weighted like a Hokkaido primary school's guardians: mostly phones, some PCs.
DOMAINS = [
    ("docomo.ne.jp", 25),
    ("ezweb.ne.jp", 10),
    ("au.com", 10),
    ("softbank.ne.jp", 10),
    ("i.softbank.jp", 8),
    ("gmail.com", 15),
    ("yahoo.co.jp", 10),
    ("icloud.com", 12),
]
WORDS = ["sky", "hana", "smile", "happy", "mirai", "nico", "star", "blue", "kaze", "yuki", "sora"]


@dataclass(frozen=True)
class DemoSummary:
    created: bool
    municipalities: int
    schools: int
    registrants: int
    staff: list[tuple[str, str]]  # (login, what it can see)
    password: str
    guardian_login_id: str
    pending_login_id: str
    registration_code: str | None  # None once that guardian has registered

    def lines(self) -> list[str]:
        out = [
            f"Demo data: {self.municipalities} municipalities, {self.schools} schools, "
            f"{self.registrants} registrants" + ("" if self.created else " (already loaded)"),
            f"Demo logins (password {self.password!r}, for demonstrations only):",
        ]
        out += [f"  console  {login:<10} {scope}" for login, scope in self.staff]
        out.append(f"  portal   {self.guardian_login_id:<10} guardian at 岩見沢市立緑小学校")
        if self.registration_code:
            out.append(
                f"  portal   {self.pending_login_id:<10} not yet registered: "
                f"registration code {self.registration_code}"
            )
        else:
            out.append(f"  portal   {self.pending_login_id:<10} has registered since (password chosen then)")
        return out


def _address(rng: random.Random, surname: str, given: str) -> str:
    domain = rng.choices([d for d, _ in DOMAINS], weights=[w for _, w in DOMAINS])[0]
    n = rng.randrange(1, 100)
    local = rng.choice(
        [
            f"{surname}.{given}-{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}",
            f"{given}-mama{n:02d}",
            f"{given}.papa{n}",
            f"{surname}-{rng.choice(['baba', 'jiji', 'family'])}{n}",
            f"{rng.choice(WORDS)}-{surname}{rng.randrange(100, 1000)}",
            f"{rng.choice(WORDS)}.{given}.{n:02d}",
        ]
    )
    return f"{local}@{domain}"


def _addresses(rng: random.Random, surname: str, given: str) -> list[str]:
    count = rng.choices([1, 2, 3, 4], weights=[30, 45, 17, 8])[0]
    found: list[str] = []
    while len(found) < count:
        candidate = _address(rng, surname, given)
        if candidate.lower() not in {a.lower() for a in found}:
            found.append(candidate)
    return found


def _summary(created: bool) -> DemoSummary:
    codes = [m[0] for m in MUNICIPALITIES]
    pending = Registrant.objects.filter(account__username=PENDING_LOGIN_ID).first()
    still_pending = pending is not None and pending.registration_code_matches(PENDING_REGISTRATION_CODE)
    return DemoSummary(
        created=created,
        municipalities=Municipality.objects.filter(code__in=codes).count(),
        schools=School.objects.filter(municipality__code__in=codes).count(),
        registrants=Registrant.objects.filter(school__municipality__code__in=codes).count(),
        staff=[
            ("centre", "support centre: every municipality"),
            ("iwamizawa", "municipality staff: 岩見沢市"),
            ("midori", "school staff: 岩見沢市立緑小学校"),
        ],
        password=DEMO_PASSWORD,
        guardian_login_id=GUARDIAN_LOGIN_ID,
        pending_login_id=PENDING_LOGIN_ID,
        registration_code=PENDING_REGISTRATION_CODE if still_pending else None,
    )


def load_demo() -> DemoSummary:
    """Load the demo data unless it is there already; either way, say what there is."""
    codes = [m[0] for m in MUNICIPALITIES]
    if Municipality.objects.filter(code__in=codes).exists():
        return _summary(created=False)
    with transaction.atomic():
        _create()
    return _summary(created=True)


def _create() -> None:
    rng = random.Random(SEED)
    now = timezone.now()
    # One Argon2 hash shared by every demo login: hashing hundreds of times would take a minute.
    password = make_password(DEMO_PASSWORD)

    schools: list[tuple[School, int, int]] = []
    midori: School | None = None
    iwamizawa: Municipality | None = None
    for code, name, domain, phone, links, slots, lead, school_rows in MUNICIPALITIES:
        municipality = Municipality.objects.create(
            code=code,
            name=name,
            mail_domain=domain,
            support_name=f"児童見守りシステム サポート窓口（{name}）",
            support_phone=phone,
            support_email=f"support@{domain}",
            support_hours=SUPPORT_HOURS.get(code, "平日 9:00〜17:00（土日祝・年末年始を除く）"),
            confirmation_links_enabled=links,
            broadcast_slots=slots,
            maintenance_notice_lead_hours=lead,
        )
        alert_templates.add_common(municipality)  # 不審者情報, 休校, 下校時刻変更, 地震発生時の安否確認
        iwamizawa = iwamizawa or municipality
        for school_name, local, classes, size in school_rows:
            school = School.objects.create(
                municipality=municipality, name=school_name, sender_local_part=local
            )
            midori = midori or school
            schools.append((school, classes, size))
    assert midori is not None
    assert iwamizawa is not None

    staff = [
        User(username="centre", role=Role.CENTRE, last_name="サポートセンター"),
        User(username="iwamizawa", role=Role.MUNICIPALITY, municipality=iwamizawa, last_name="岩見沢市"),
        User(username="midori", role=Role.SCHOOL, school=midori, last_name="緑小学校"),
    ]
    for user in staff:
        user.password = password
    User.objects.bulk_create(staff)

    # (login ID, password hash, school, fields, addresses, registration code digest)
    rows: list[tuple[str, str, School, dict[str, object], list[str], str]] = [
        (
            GUARDIAN_LOGIN_ID,
            password,
            midori,
            {"child_name": "佐藤 陽翔", "child_name_kana": "さとう はると", "grade": 3, "class_name": "1"},
            ["sato.haruto-mama@docomo.ne.jp", "sato-papa.0412@gmail.com"],
            "",
        ),
        (
            PENDING_LOGIN_ID,
            make_password(None),
            midori,
            {"child_name": "鈴木 さくら", "child_name_kana": "すずき さくら", "grade": 2, "class_name": "2"},
            [],
            hash_registration_code(PENDING_REGISTRATION_CODE),
        ),
    ]
    login_ids = {GUARDIAN_LOGIN_ID, PENDING_LOGIN_ID}
    for school, classes, size in schools:
        for _ in range(size):
            login_id = str(rng.randrange(20_000_000, 100_000_000))
            while login_id in login_ids:
                login_id = str(rng.randrange(20_000_000, 100_000_000))
            login_ids.add(login_id)
            surname, surname_kana, surname_latin = rng.choice(SURNAMES)
            given, given_kana, given_latin = rng.choice(GIVEN_NAMES)
            fields: dict[str, object] = {
                "child_name": f"{surname} {given}",
                "child_name_kana": f"{surname_kana} {given_kana}",
                "grade": rng.randint(1, 6),
                "class_name": str(rng.randint(1, classes)),
                "receive_broadcasts": rng.random() > 0.05,
                "created_at": now - timedelta(days=rng.randrange(1, 400)),
            }
            if rng.random() < 0.03:
                fields["status"] = RegistrantStatus.DEREGISTERED
                fields["deregistered_at"] = now - timedelta(days=rng.randrange(1, 30))
            if rng.random() < 0.08:  # handed a registration letter, not logged in yet
                rows.append((login_id, make_password(None), school, fields, [], _random_code_digest()))
            else:
                addresses = _addresses(rng, surname_latin, given_latin)
                rows.append((login_id, password, school, fields, addresses, ""))

    User.objects.bulk_create(User(username=login_id, password=hashed) for login_id, hashed, *_ in rows)
    user_ids = dict(User.objects.filter(username__in=login_ids).values_list("username", "pk"))
    # bulk_create does not hand back primary keys on every backend: match rows by account.
    Registrant.objects.bulk_create(
        Registrant(
            account_id=user_ids[login_id],
            school=school,
            registration_code_digest=digest,
            registration_code_issued_at=now if digest else None,
            **fields,
        )
        for login_id, _hash, school, fields, _addresses, digest in rows
    )
    registrant_ids = dict(
        Registrant.objects.filter(account_id__in=user_ids.values()).values_list("account_id", "pk")
    )
    Address.objects.bulk_create(
        Address(registrant_id=registrant_ids[user_ids[login_id]], slot=slot, email=email)
        for login_id, _hash, _school, _fields, addresses, _digest in rows
        for slot, email in enumerate(addresses, start=1)
    )


def _random_code_digest() -> str:
    # Nobody knows these codes: the letters were "printed" long ago. Staff can issue new ones.
    return hash_registration_code(new_registration_code())

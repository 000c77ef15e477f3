"""Demo data for `mimamori run --demo`: the seed's three municipalities, their schools with
classes of 25–35 children (some of them siblings, whose guardian's addresses they share), and
staff and guardian logins with a known password; then the demo's past, written by the apps
above the registry through steps they register here (register(), as the sweep's steps are):
past broadcasts with their deliveries, confirmations and answers (receipts/demo.py), gate
readers and today's passes (gates/demo.py). The audit log gets the events those actions made,
at the moments they happened (record_past()).

Everything is generated from a fixed seed, so every demo looks the same (the past is placed
relative to the day it is loaded). The password ``mimamori-demo`` is for demonstrations only:
never load this into a production database.

The addresses use the real carrier and PC mail domains (docomo.ne.jp, gmail.com, …) because
the address rules and the guardian help talk about exactly those; the local parts are made up
and may still belong to someone. That is safe only while mail goes to the built-in
development mailbox, which captures everything: `mimamori run --demo` refuses a real relay.
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.hashers import get_hasher, make_password
from django.db import connection, models, transaction
from django.db.models import Q
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.registry import alert_templates
from mimamori.registry.logins import home_municipality
from mimamori.registry.models import (
    Address,
    Municipality,
    Registrant,
    RegistrantStatus,
    School,
    hash_registration_code,
    new_registration_code,
)
from mimamori.registry.roster import refresh_planner_statistics

DEMO_PASSWORD = "mimamori-demo"  # noqa: S105 (demo only, printed on start)
# make_password(DEMO_PASSWORD) with the production hasher, made once and kept: every demo login
# shares it, and hashing it (Argon2, deliberately slow) took most of the demo's load time. The
# password is printed on every start anyway. Should Django's Argon2 parameters change, a login
# rehashes it as usual; with another first hasher (the tests' fast one) it is hashed anew.
DEMO_PASSWORD_HASH = (
    "argon2$argon2id$v=19$m=102400,t=2,p=8$SmpFSXJtVFpmcm1sSVpjZ1oxU2hoQg"  # noqa: S105
    "$+4vbZYZD3lj5bBpD6Iox5Bn0qeeShMCiUv4p/sZHI90"
)
GUARDIAN_LOGIN_ID = "10000001"
GUARDIAN_ADDRESSES = ["sato.haruto-mama@docomo.ne.jp", "sato-papa.0412@gmail.com"]
PENDING_LOGIN_ID = "10000002"
# Fixed so that a second `run --demo` can print it again; the alphabet avoids 0/O and 1/I/L.
PENDING_REGISTRATION_CODE = "DEMA-2345-6789"
SEED = 20250401

# code, name, mail domain, support phone (0120-000-xxx: fictional), confirmation links,
# broadcast slots, maintenance notice lead hours, schools (name, sender local part, classes a grade)
MUNICIPALITIES = [
    (
        "iwamizawa", "岩見沢市", "mail.mimamori-iwamizawa.jp", "0120-000-101", True, [1, 2], 72,
        [
            ("岩見沢市立緑小学校", "midori-sho", 3),
            ("岩見沢市立東小学校", "higashi-sho", 2),
            ("岩見沢市立北本町小学校", "kitahoncho-sho", 1),
            ("岩見沢市立南小学校", "minami-sho", 1),
        ],
    ),
    (
        "takikawa", "滝川市", "mail.mimamori-takikawa.jp", "0120-000-102", True, [1, 2, 3], 48,
        [
            ("滝川市立江部乙小学校", "ebeotsu-sho", 1),
            ("滝川市立西小学校", "nishi-sho", 2),
            ("滝川市立東栄小学校", "toei-sho", 1),
        ],
    ),
    (
        "yubari", "夕張市", "mail.mimamori-yubari.jp", "0120-000-103", False, [1, 2, 3, 4], 96,
        [
            ("夕張市立夕張小学校", "yubari-sho", 1),
            ("夕張市立清水沢小学校", "shimizusawa-sho", 1),
            ("夕張市立若菜小学校", "wakana-sho", 1),
        ],
    ),
]  # fmt: skip
GRADES = range(1, 7)
CLASS_SIZE = (25, 35)  # registrants of one class, fewest and most
# Of a school's children, this share has a brother or sister at the school, in a lower grade:
# their guardian registered both with the same addresses (one mail names both, B5).
SIBLINGS = 0.08
# 緑小学校 has gate readers (gates/demo.py): its youngest three grades carry IC tags, entered
# with the roster (its タグID column).
GATE_SCHOOL = "midori-sho"
TAGGED_GRADES = (1, 2, 3)
GUARDIAN_TAG = "0114A1B2C3D4E5F6"
PENDING_TAG = "0114B2C3D4E5F607"
# The demo's past starts this long before it is loaded: every registrant is older than that, so
# each past broadcast reached the children it would have reached then.
HISTORY_DAYS = 14

# Staff logins; the demo's past places their console sessions at these (documentation) addresses.
STAFF_ADDRESSES = {"centre": "192.0.2.10", "iwamizawa": "192.0.2.21", "midori": "192.0.2.34"}


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
DOMAIN_NAMES = [d for d, _ in DOMAINS]
DOMAIN_WEIGHTS = list(itertools.accumulate(w for _, w in DOMAINS))
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


# --- the demo's past, written by the apps above -------------------------------------------

Step = Callable[[datetime], None]
_steps: dict[str, Step] = {}


def register(name: str, step: Step) -> None:
    """Have load_demo() run ``step(now)`` after the registry's part, in the same transaction, in
    the order registered (an app's AppConfig.ready()). Registering a name again replaces it."""
    _steps[name] = step


def record_past(
    at: datetime,
    action: str,
    *,
    actor: User | None,
    target: str,
    municipality: Municipality | int | None,
    ip_address: str | None = None,
    **details: Any,
) -> AuditEvent:
    """The audit event audit.log.record() wrote when the demo's past happened, at that moment.

    Only the demo writes an event after the fact: record() always writes the present, and no
    event is changed once written."""
    return AuditEvent.objects.create(
        at=at,
        action=action,
        actor=actor,
        actor_name=actor.get_username() if actor is not None else "",
        target=target[:200],
        municipality_id=municipality.pk if isinstance(municipality, Municipality) else municipality,
        ip_address=ip_address,
        details=details,
    )


def staff_login(user: User, at: datetime) -> None:
    """A staff member's console login at ``at``, as registry/logins.py files it (and Django
    notes it as the last login, unless a later one is there)."""
    User.objects.filter(Q(last_login__isnull=True) | Q(last_login__lt=at), pk=user.pk).update(last_login=at)
    record_past(
        at,
        "login.succeeded",
        actor=user,
        target=f"user {user.get_username()}",
        municipality=home_municipality(user),
        ip_address=STAFF_ADDRESSES.get(user.get_username()),
        site="console",
    )


def local_moment(now: datetime, days_ago: int, hour: int, minute: int) -> datetime:
    """``hour:minute`` on the local day ``days_ago`` before ``now``'s."""
    day = timezone.localdate(now) - timedelta(days=days_ago)
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour, minute))


def insert_rows(model: type[models.Model], rows: Iterable[dict[str, Any]]) -> int:
    """INSERT ``rows`` ({field name: value}, the field's default for any left out, ``auto_now``
    fields the present) in one executemany; how many. What bulk_create writes, without its
    preparation of every value through the field (nine tenths of the demo's load time with it):
    the demo's values are of the fields' own types already, and only dates, times and JSON are
    adapted, as the fields adapt them. No signals, no save(); the caller reads primary keys back."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    defaults: dict[str, Any] = {}
    adapters: dict[str, Callable[[Any], Any]] = {}
    for field in fields:
        auto_now = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        defaults[field.attname] = now if auto_now else field.get_default()
        if isinstance(field, models.DateTimeField):
            adapters[field.attname] = connection.ops.adapt_datetimefield_value
        elif isinstance(field, models.DateField):
            adapters[field.attname] = connection.ops.adapt_datefield_value
        elif isinstance(field, models.JSONField):
            adapters[field.attname] = functools.partial(field.get_db_prep_save, connection=connection)
    names = [f.attname for f in fields]
    keys = {f.name: f.attname for f in fields}

    def adapt(name: str, value: Any) -> Any:
        adapter = adapters.get(name)
        return value if adapter is None or value is None else adapter(value)

    params = []
    for row in rows:
        given = {keys.get(name, name): value for name, value in row.items()}
        if unknown := set(given) - set(names):
            raise ValueError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
        params.append([adapt(name, given.get(name, defaults[name])) for name in names])
    if not params:
        return 0
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", params)  # noqa: S608
    return len(params)


# --- loading ---------------------------------------------------------------------------------


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
        now = timezone.now()
        _create(now)
        for step in _steps.values():
            step(now)
    return _summary(created=True)


def _address(rng: random.Random, surname: str, given: str) -> str:
    domain = rng.choices(DOMAIN_NAMES, cum_weights=DOMAIN_WEIGHTS)[0]
    n = rng.randrange(1, 100)
    kind = rng.randrange(6)
    if kind == 0:
        local = f"{surname}.{given}-{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    elif kind == 1:
        local = f"{given}-mama{n:02d}"
    elif kind == 2:
        local = f"{given}.papa{n}"
    elif kind == 3:
        local = f"{surname}-{rng.choice(['baba', 'jiji', 'family'])}{n}"
    elif kind == 4:
        local = f"{rng.choice(WORDS)}-{surname}{rng.randrange(100, 1000)}"
    else:
        local = f"{rng.choice(WORDS)}.{given}.{n:02d}"
    return f"{local}@{domain}"


def _addresses(rng: random.Random, surname: str, given: str, taken: set[str]) -> list[str]:
    """A family's 1–4 addresses, none another family's (``taken``, lower-cased, grows)."""
    count = rng.choices([1, 2, 3, 4], weights=[30, 45, 17, 8])[0]
    found: list[str] = []
    while len(found) < count:
        candidate = _address(rng, surname, given)
        if candidate.lower() not in taken:
            taken.add(candidate.lower())
            found.append(candidate)
    return found


@dataclass
class _Child:
    login_id: str
    password: str
    school: School
    fields: dict[str, object]
    addresses: list[str]
    code_digest: str = ""


def _create(now: datetime) -> None:
    rng = random.Random(SEED)
    password = _demo_password_hash()
    unusable = make_password(None)

    schools: list[tuple[School, int]] = []
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
        for school_name, local, classes in school_rows:
            school = School.objects.create(
                municipality=municipality, name=school_name, sender_local_part=local
            )
            midori = midori or school
            schools.append((school, classes))
    assert midori is not None
    assert iwamizawa is not None

    staff = [
        User(username="centre", role=Role.CENTRE, last_name="サポートセンター"),
        User(username="iwamizawa", role=Role.MUNICIPALITY, municipality=iwamizawa, last_name="岩見沢市"),
        User(username="midori", role=Role.SCHOOL, school=midori, last_name="緑小学校"),
    ]
    for user in staff:
        user.password = password
        user.date_joined = now - timedelta(days=420)
    User.objects.bulk_create(staff)

    taken = {address.lower() for address in GUARDIAN_ADDRESSES}
    fixed = [
        _Child(
            GUARDIAN_LOGIN_ID,
            password,
            midori,
            {
                "child_name": "佐藤 陽翔",
                "child_name_kana": "さとう はると",
                "grade": 3,
                "class_name": "1",
                "tag_id": GUARDIAN_TAG,
                "created_at": now - timedelta(days=200),
            },
            list(GUARDIAN_ADDRESSES),
        ),
        _Child(
            PENDING_LOGIN_ID,
            unusable,
            midori,
            {
                "child_name": "鈴木 さくら",
                "child_name_kana": "すずき さくら",
                "grade": 2,
                "class_name": "2",
                "tag_id": PENDING_TAG,
                "created_at": now - timedelta(days=HISTORY_DAYS + 20),
                "registration_code_issued_at": now - timedelta(days=HISTORY_DAYS + 20),
            },
            [],
            hash_registration_code(PENDING_REGISTRATION_CODE),
        ),
    ]
    children = list(fixed)
    login_ids = {child.login_id for child in fixed}
    tags = {GUARDIAN_TAG, PENDING_TAG}
    for school, classes in schools:
        # Registered families of the school: (surname, addresses, grade). A sibling joins one of
        # a grade written before (a brother or sister in a lower grade).
        families: list[tuple[tuple[str, str, str], list[str], int]] = []
        for grade in GRADES:
            earlier = [family for family in families if family[2] != grade]
            for class_number in range(1, classes + 1):
                class_name = str(class_number)
                size = rng.randint(*CLASS_SIZE) - sum(
                    1
                    for child in fixed
                    if child.school == school
                    and (child.fields["grade"], child.fields["class_name"]) == (grade, class_name)
                )
                for _ in range(size):
                    login_id = str(rng.randrange(20_000_000, 100_000_000))
                    while login_id in login_ids:
                        login_id = str(rng.randrange(20_000_000, 100_000_000))
                    login_ids.add(login_id)
                    sibling = bool(earlier) and rng.random() < SIBLINGS
                    if sibling:
                        family = earlier.pop(rng.randrange(len(earlier)))
                        families.remove(family)  # two children of a family at most
                        (surname, surname_kana, surname_latin), family_addresses = family[0], family[1]
                    else:
                        surname, surname_kana, surname_latin = rng.choice(SURNAMES)
                    given, given_kana, given_latin = rng.choice(GIVEN_NAMES)
                    # Registered before the demo's past begins; a deregistered child left then.
                    created_days = rng.randrange(HISTORY_DAYS + 16, 400)
                    fields: dict[str, object] = {
                        "child_name": f"{surname} {given}",
                        "child_name_kana": f"{surname_kana} {given_kana}",
                        "grade": grade,
                        "class_name": class_name,
                        "receive_broadcasts": sibling or rng.random() > 0.05,
                        "created_at": now - timedelta(days=created_days, minutes=rng.randrange(600)),
                    }
                    if not sibling and rng.random() < 0.03:
                        fields["status"] = RegistrantStatus.DEREGISTERED
                        fields["deregistered_at"] = now - timedelta(days=rng.randrange(HISTORY_DAYS + 1, 30))
                    elif school == midori and grade in TAGGED_GRADES:
                        tag = f"0114{rng.getrandbits(48):012X}"  # a FeliCa IDm
                        while tag in tags:
                            tag = f"0114{rng.getrandbits(48):012X}"
                        tags.add(tag)
                        fields["tag_id"] = tag
                    if sibling:
                        children.append(_Child(login_id, password, school, fields, list(family_addresses)))
                    elif rng.random() < 0.08:  # handed a registration letter, not logged in yet
                        fields["registration_code_issued_at"] = fields["created_at"]
                        children.append(_Child(login_id, unusable, school, fields, [], _random_code_digest()))
                    else:
                        addresses = _addresses(rng, surname_latin, given_latin, taken)
                        children.append(_Child(login_id, password, school, fields, addresses))
                        if fields.get("status") != RegistrantStatus.DEREGISTERED:
                            families.append(((surname, surname_kana, surname_latin), addresses, grade))

    insert_rows(
        User,
        (
            {"username": c.login_id, "password": c.password, "date_joined": c.fields["created_at"]}
            for c in children
        ),
    )
    user_ids = dict(User.objects.filter(username__in=login_ids).values_list("username", "pk"))
    insert_rows(
        Registrant,
        (
            {
                "account": user_ids[child.login_id],
                "school": child.school.pk,
                "registration_code_digest": child.code_digest,
                **child.fields,
            }
            for child in children
        ),
    )
    registrant_ids = dict(
        Registrant.objects.filter(account_id__in=user_ids.values()).values_list("account_id", "pk")
    )
    insert_rows(
        Address,
        (
            {"registrant": registrant_ids[user_ids[child.login_id]], "slot": slot, "email": email}
            for child in children
            for slot, email in enumerate(child.addresses, start=1)
        ),
    )
    # As after a roster import: the steps' fan-outs are planned with these rows counted (an
    # ANALYZE in the transaction that wrote them counts them on PostgreSQL).
    if connection.vendor == "postgresql":
        refresh_planner_statistics()


def _demo_password_hash() -> str:
    if DEMO_PASSWORD_HASH.startswith(f"{get_hasher().algorithm}$"):
        return DEMO_PASSWORD_HASH
    return make_password(DEMO_PASSWORD)


def _random_code_digest() -> str:
    # Nobody knows these codes: the letters were "printed" long ago. Staff can issue new ones.
    return hash_registration_code(new_registration_code())

"""The console's gate pages (B6): readers (the token shown once, revoke), 登下校の記録 and 未登録のタグ,
each within the staff member's scope (another school's staff get 404 or see nothing)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role, User
from mimamori.audit.models import AuditEvent
from mimamori.gates import readers
from mimamori.gates.models import Direction, GatePass, GateReader, PassOutcome, reader_token_digest
from mimamori.registry import tags
from mimamori.registry.models import Registrant, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


def _signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


class Cast:
    """City A with schools A1 and A2, city B with B1; a reader and a tagged child at A1 and B1."""

    def __init__(self) -> None:
        self.city_a = make_municipality(name="岩見沢市")
        self.city_b = make_municipality(name="滝川市")
        self.a1: School = make_school(self.city_a, name="東小学校")
        self.a2: School = make_school(self.city_a, name="西小学校")
        self.b1: School = make_school(self.city_b, name="北小学校")
        self.a1_staff = make_staff(Role.SCHOOL, school=self.a1)
        self.a2_staff = make_staff(Role.SCHOOL, school=self.a2)
        self.city_a_staff = make_staff(Role.MUNICIPALITY, municipality=self.city_a)
        self.centre = make_staff(Role.CENTRE)
        self.hanako: Registrant = make_registrant(
            self.a1, ["hanako@docomo.ne.jp"], child_name="見守 花子", class_name="1"
        )
        self.ichiro: Registrant = make_registrant(
            self.a1, ["ichiro@docomo.ne.jp"], child_name="岩見沢 一郎", class_name="2"
        )
        self.kita: Registrant = make_registrant(self.b1, ["kita@docomo.ne.jp"], child_name="北 次郎")
        tags.set_tag(self.hanako, "A1000001", by=self.a1_staff)
        tags.set_tag(self.ichiro, "A1000002", by=self.a1_staff)
        tags.set_tag(self.kita, "B1000001", by=None)
        self.gate_a1, _token = readers.register(self.a1, "正門", "正門の左", by=self.a1_staff)
        self.gate_b1, _token = readers.register(self.b1, "北門", "", by=None)


@pytest.fixture
def cast() -> Cast:
    return Cast()


_event = iter(range(1, 10_000))


def _pass(
    reader: GateReader,
    tag: str,
    registrant: Registrant | None,
    outcome: str,
    at: datetime | None = None,
    direction: str = Direction.IN,
) -> GatePass:
    """A pass as the reader's batch left it recorded (gates/passes.py writes these rows)."""
    return GatePass.objects.create(
        reader=reader,
        event_id=f"e{next(_event)}",
        tag=tag,
        registrant=registrant,
        direction=direction,
        at=at or timezone.now(),
        outcome=outcome,
        mails=2 if outcome == PassOutcome.MAILED else 0,
    )


# --- readers -----------------------------------------------------------------------------


def test_register_a_reader_shows_its_token_once(cast: Cast) -> None:
    client = _signed_in(cast.a1_staff)
    response = client.post(
        reverse("console:gate_reader_new"), {"school": cast.a1.pk, "name": "裏門", "place": "体育館側"}
    )
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    assert "二度と表示されません" in page
    token = page.split("data-token>")[1].split("</pre>")[0]
    reader = GateReader.objects.get(name="裏門")
    assert (reader.school, reader.place, reader.created_by) == (cast.a1, "体育館側", cast.a1_staff)
    assert reader.token_digest == reader_token_digest(token)
    assert readers.authenticate(token) == reader
    listing = client.get(reverse("console:gate_readers")).content.decode()
    assert "裏門" in listing
    assert "体育館側" in listing
    assert token not in listing  # never shown again
    assert AuditEvent.objects.filter(
        action="gate_reader.registered", actor=cast.a1_staff, target__contains="裏門"
    ).exists()


def test_reader_form_refuses_a_school_outside_the_scope(cast: Cast) -> None:
    client = _signed_in(cast.a1_staff)
    response = client.post(reverse("console:gate_reader_new"), {"school": cast.b1.pk, "name": "偽の門"})
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert not GateReader.objects.filter(name="偽の門").exists()


def test_readers_list_holds_only_the_scope(cast: Cast) -> None:
    a1_row, b1_row = f'data-reader="{cast.gate_a1.pk}"', f'data-reader="{cast.gate_b1.pk}"'
    a1_page = _signed_in(cast.a1_staff).get(reverse("console:gate_readers")).content.decode()
    assert a1_row in a1_page
    assert b1_row not in a1_page
    a2_page = _signed_in(cast.a2_staff).get(reverse("console:gate_readers")).content.decode()
    assert a1_row not in a2_page
    assert "ゲートリーダーは登録されていません" in a2_page
    centre_page = _signed_in(cast.centre).get(reverse("console:gate_readers")).content.decode()
    assert a1_row in centre_page
    assert b1_row in centre_page


def test_revoke_asks_then_revokes_and_the_token_stops_working(cast: Cast) -> None:
    reader, token = readers.register(cast.a1, "東門", "", by=cast.a1_staff)
    client = _signed_in(cast.a1_staff)
    url = reverse("console:gate_reader_revoke", args=[reader.pk])
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "元に戻せません" in confirm.content.decode()
    reader.refresh_from_db()
    assert reader.is_active  # GET never acts
    assert client.post(url).status_code == 302
    reader.refresh_from_db()
    assert not reader.is_active
    assert readers.authenticate(token) is None
    assert AuditEvent.objects.filter(action="gate_reader.revoked", actor=cast.a1_staff).count() == 1
    assert "無効（" in client.get(reverse("console:gate_readers")).content.decode()


def test_staff_of_another_school_cannot_revoke(cast: Cast) -> None:
    url = reverse("console:gate_reader_revoke", args=[cast.gate_a1.pk])
    for outsider in (cast.a2_staff, make_staff(Role.MUNICIPALITY, municipality=cast.city_b)):
        client = _signed_in(outsider)
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    cast.gate_a1.refresh_from_db()
    assert cast.gate_a1.is_active


# --- passes ------------------------------------------------------------------------------


def test_passes_page_lists_today_with_the_outcome_of_each(cast: Cast) -> None:
    _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.MAILED)
    _pass(cast.gate_a1, "A1000002", cast.ichiro, PassOutcome.OLD)
    _pass(cast.gate_a1, "A1000002", cast.ichiro, PassOutcome.REPEAT)
    _pass(cast.gate_a1, "FFFF0001", None, PassOutcome.UNKNOWN)
    _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.MAILED, at=timezone.now() - timedelta(days=2))
    _pass(cast.gate_b1, "B1000001", cast.kita, PassOutcome.MAILED)
    response = _signed_in(cast.a1_staff).get(reverse("console:gate_passes"))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("data-pass=") == 4  # today's at A1; not the day before, not B1
    assert "見守 花子" in page
    assert "岩見沢 一郎" in page
    assert "北 次郎" not in page
    assert 'data-outcome-count="mailed">1<' in page
    assert 'data-outcome-count="old">1<' in page
    assert 'data-outcome-count="repeat">1<' in page
    assert 'data-outcome-count="unknown">1<' in page
    assert 'data-outcome-count="no_address">0<' in page
    assert "メール送信済み" in page
    assert "記録のみ（古いため送信せず）" in page
    assert "登校" in page


def test_passes_page_filters_by_date_and_class(cast: Cast) -> None:
    two_days_ago = timezone.localtime() - timedelta(days=2)
    _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.MAILED, at=two_days_ago)
    _pass(cast.gate_a1, "A1000002", cast.ichiro, PassOutcome.MAILED, at=two_days_ago, direction=Direction.OUT)
    client = _signed_in(cast.a1_staff)
    url = reverse("console:gate_passes")
    that_day = client.get(url, {"day": two_days_ago.date().isoformat()}).content.decode()
    assert that_day.count("data-pass=") == 2
    assert "下校" in that_day
    class_2 = client.get(url, {"day": two_days_ago.date().isoformat(), "grade": "3", "class_name": "２組"})
    page = class_2.content.decode()
    assert page.count("data-pass=") == 1
    assert "岩見沢 一郎" in page
    assert client.get(url).content.decode().count("data-pass=") == 0  # today: none


def test_passes_page_shows_no_other_school(cast: Cast) -> None:
    _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.MAILED)
    a2_page = _signed_in(cast.a2_staff).get(reverse("console:gate_passes")).content.decode()
    assert "data-pass=" not in a2_page
    # Naming a school outside the scope filters nothing in: the choice is refused and the scope stays.
    forged = _signed_in(cast.a2_staff).get(reverse("console:gate_passes"), {"school": cast.a1.pk})
    assert "data-pass=" not in forged.content.decode()
    city_page = _signed_in(cast.city_a_staff).get(reverse("console:gate_passes")).content.decode()
    assert city_page.count("data-pass=") == 1


def test_passes_page_queries_do_not_grow_with_the_passes(
    cast: Cast, django_assert_max_num_queries: object
) -> None:
    for _ in range(30):
        _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.REPEAT)
    client = _signed_in(cast.a1_staff)
    with django_assert_max_num_queries(12):  # type: ignore[operator]
        assert client.get(reverse("console:gate_passes")).status_code == 200


# --- unknown tags ------------------------------------------------------------------------


def test_unknown_tags_page_counts_and_links_to_assign(cast: Cast) -> None:
    earlier = timezone.now() - timedelta(hours=3)
    back_gate, _token = readers.register(cast.a1, "裏門", "", by=cast.a1_staff)
    _pass(cast.gate_a1, "FFFF0001", None, PassOutcome.UNKNOWN, at=earlier)
    last = _pass(back_gate, "FFFF0001", None, PassOutcome.UNKNOWN)
    _pass(cast.gate_a1, "FFFF0002", None, PassOutcome.UNKNOWN, at=earlier)
    _pass(cast.gate_b1, "FFFF0003", None, PassOutcome.UNKNOWN)
    _pass(cast.gate_a1, "A1000001", cast.hanako, PassOutcome.MAILED)
    client = _signed_in(cast.a1_staff)
    page = client.get(reverse("console:gate_unknown_tags")).content.decode()
    assert 'data-unknown-tag="FFFF0001"' in page
    assert 'data-unknown-tag="FFFF0002"' in page
    assert "FFFF0003" not in page
    assert 'data-unknown-tag="A1000001"' not in page
    row = page.split('data-unknown-tag="FFFF0001"')[1].split("</tr>")[0]
    assert ">2<" in row  # read twice
    assert "裏門" in row  # the reader that read it last
    assert timezone.localtime(last.at).strftime("%Y-%m-%d %H:%M") in row
    assign = reverse("console:gate_tag_assign", args=[cast.a1.pk]) + "?tag=FFFF0001"
    assert assign in page.replace("&amp;", "&")


def test_assigning_an_unknown_tag_takes_it_off_the_list(cast: Cast) -> None:
    _pass(cast.gate_a1, "FFFF0001", None, PassOutcome.UNKNOWN)
    client = _signed_in(cast.a1_staff)
    found = client.get(
        reverse("console:gate_tag_assign", args=[cast.a1.pk]), {"tag": "FFFF0001", "q": "岩見沢"}
    )
    assert found.status_code == 200
    page = found.content.decode()
    assert f'data-registrant="{cast.ichiro.pk}"' in page
    assert f'data-registrant="{cast.hanako.pk}"' not in page
    tag_page = reverse("console:registrant_tag", args=[cast.ichiro.pk])
    assert f"{tag_page}?tag=FFFF0001&back=unknown" in page.replace("&amp;", "&")
    prefilled = client.get(tag_page, {"tag": "FFFF0001", "back": "unknown"}).content.decode()
    assert 'value="FFFF0001"' in prefilled
    given = client.post(tag_page, {"tag_id": "FFFF0001", "back": "unknown"})
    assert given.status_code == 302
    assert given["Location"] == reverse("console:gate_unknown_tags") + f"?school={cast.a1.pk}"
    cast.ichiro.refresh_from_db()
    assert cast.ichiro.tag_id == "FFFF0001"
    assert "FFFF0001" not in client.get(reverse("console:gate_unknown_tags")).content.decode()


def test_unknown_tags_of_another_school_are_out_of_reach(cast: Cast) -> None:
    _pass(cast.gate_a1, "FFFF0001", None, PassOutcome.UNKNOWN)
    client = _signed_in(cast.a2_staff)
    url = reverse("console:gate_unknown_tags")
    assert "FFFF0001" not in client.get(url).content.decode()
    assert client.get(url, {"school": cast.a1.pk}).status_code == 404
    assign = reverse("console:gate_tag_assign", args=[cast.a1.pk])
    assert client.get(assign, {"tag": "FFFF0001"}).status_code == 404


def test_city_staff_choose_the_school_of_the_unknown_tags(cast: Cast) -> None:
    _pass(cast.gate_a1, "FFFF0001", None, PassOutcome.UNKNOWN)
    client = _signed_in(cast.city_a_staff)
    url = reverse("console:gate_unknown_tags")
    unchosen = client.get(url).content.decode()
    assert "学校を選んでください" in unchosen
    assert "FFFF0001" not in unchosen
    assert 'data-unknown-tag="FFFF0001"' in client.get(url, {"school": cast.a1.pk}).content.decode()
    assert client.get(url, {"school": cast.b1.pk}).status_code == 404


def test_a_reader_posts_an_unknown_tag_staff_give_it_and_the_next_pass_mails(cast: Cast) -> None:
    """The whole path through the reader's API: unknown → listed → given → mailed."""
    reader, token = readers.register(cast.a1, "通用門", "", by=cast.a1_staff)
    newcomer = make_registrant(cast.a1, ["newcomer@docomo.ne.jp"], child_name="転入 三郎")
    api = Client()

    def post(event_id: str) -> dict[str, int]:
        at = timezone.localtime().replace(microsecond=0).isoformat()
        event = {"id": event_id, "tag": "04C0FFEE", "direction": "in", "at": at}
        response = api.post(
            "/api/v1/gate-events",
            {"events": [event]},
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.content
        result: dict[str, int] = response.json()
        return result

    assert post("r1")["unknown_tags"] == 1
    staff = _signed_in(cast.a1_staff)
    listed = staff.get(reverse("console:gate_unknown_tags")).content.decode()
    assert 'data-unknown-tag="04C0FFEE"' in listed
    given = staff.post(
        reverse("console:registrant_tag", args=[newcomer.pk]), {"tag_id": "04C0FFEE", "back": "unknown"}
    )
    assert given.status_code == 302
    assert (
        'data-unknown-tag="04C0FFEE"' not in staff.get(reverse("console:gate_unknown_tags")).content.decode()
    )
    assert post("r2")["unknown_tags"] == 0
    mailed = GatePass.objects.get(reader=reader, event_id="r2")
    assert (mailed.registrant, mailed.outcome, mailed.mails) == (newcomer, PassOutcome.MAILED, 1)


def test_gate_pages_are_in_the_menu_and_on_the_school_page(cast: Cast) -> None:
    client = _signed_in(cast.a1_staff)
    home = client.get(reverse("console:home")).content.decode()
    assert reverse("console:gate_passes") in home
    assert "登下校の記録" in home
    school = client.get(reverse("console:school", args=[cast.a1.pk])).content.decode()
    assert "ゲートリーダー" in school
    assert "未登録のタグ" in school

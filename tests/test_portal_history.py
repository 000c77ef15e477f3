"""受信履歴 (B13, issue 14): a guardian rereads on the portal every broadcast sent to their child."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import Registrant, School
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db


def history_of(registrant: Registrant, query: str = "") -> str:
    client = Client()
    client.force_login(registrant.account)
    response = client.get(reverse("portal:history") + query)
    assert response.status_code == 200
    return response.content.decode()


def send(
    school: School, subject: str, body: str, *, grades: tuple[int, ...] = (), confirm: bool = False
) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject=subject,
        body=body,
        scope=resolve_scope(staff, grades=grades),
        request_confirmation=confirm,
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    broadcast.refresh_from_db()
    return broadcast


def test_the_history_lists_the_childs_broadcasts_newest_first_in_full(smtp_sink: Sink) -> None:
    school = make_school(name="緑小学校")
    child = make_registrant(school, ["mama@docomo.ne.jp", "papa@ezweb.ne.jp"], grade=3)
    other = make_registrant(school, ["other@docomo.ne.jp"], grade=5)
    first = send(
        school,
        "不審者情報",
        "本日15時ごろ、公園付近で不審者が目撃されました。\n下校時は複数で帰宅してください。",
    )
    Broadcast.objects.filter(pk=first.pk).update(send_requested_at=timezone.now() - timedelta(hours=1))
    send(school, "5年生 遠足のお知らせ", "5年生だけのお知らせです。", grades=(5,))
    send(school, "休校のお知らせ", "明日は大雪のため休校とします。", confirm=True)

    page = history_of(child)
    assert "受信履歴" in page
    assert page.index("休校のお知らせ") < page.index("不審者情報")  # newest first
    assert "本日15時ごろ、公園付近で不審者が目撃されました。<br>下校時は複数で帰宅してください。" in page
    assert "明日は大雪のため休校とします。" in page
    assert "緑小学校" in page
    assert "5年生 遠足のお知らせ" not in page  # sent to grade 5, not to this child
    # The one asking for confirmation: not confirmed yet, with the link of the child's slot 1 mail.
    token = Delivery.objects.get(
        broadcast__subject="休校のお知らせ", email="mama@docomo.ne.jp"
    ).confirmation_token
    assert token
    assert "受信確認がまだです" in page
    assert reverse("confirm", kwargs={"token": token}) in page
    assert "5年生 遠足のお知らせ" in history_of(other)
    assert "休校のお知らせ" in history_of(other)

    # Confirmed from father's mail: the history says so and offers no link any more.
    papa_token = Delivery.objects.get(
        broadcast__subject="休校のお知らせ", email="papa@ezweb.ne.jp"
    ).confirmation_token
    assert Client().post(reverse("confirm", kwargs={"token": papa_token})).status_code == 303
    page = history_of(child)
    assert "受信確認済み" in page
    assert "受信確認がまだです" not in page
    assert reverse("confirm", kwargs={"token": token}) not in page


def test_an_expired_confirmation_is_said_without_a_link(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    child = make_registrant(school, ["mama@docomo.ne.jp"])
    send(school, "地震の安否確認", "お子さまの安否をお知らせください。", confirm=True)
    settings.MIMAMORI_CONFIRMATION_DAYS = 0
    page = history_of(child)
    assert "地震の安否確認" in page
    assert "受信確認の期間は終了しました" in page
    assert "/c/" not in page


def test_a_child_without_broadcasts_sees_an_empty_history_and_the_menu_links_to_it() -> None:
    child = make_registrant(make_school(), ["mama@docomo.ne.jp"])
    assert "配信された一斉同報メールはまだありません" in history_of(child)
    client = Client()
    client.force_login(child.account)
    assert reverse("portal:history") in client.get(reverse("portal:home")).content.decode()


def test_the_history_pages_twenty_at_a_time(smtp_sink: Sink) -> None:
    school = make_school()
    child = make_registrant(school, ["mama@docomo.ne.jp"])
    for n in range(21):
        send(school, f"お知らせ{n:02d}号", f"本文{n:02d}")
    first, second = history_of(child), history_of(child, "?page=2")
    assert "お知らせ20号" in first
    assert "お知らせ01号" in first
    assert "お知らせ00号" not in first
    assert "お知らせ00号" in second
    assert "2 ページ中 1 ページ" in first

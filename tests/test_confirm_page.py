"""The guardian's 受信確認 page at /c/<token>/ (S5): GET shows, only POST records."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, Delivery
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.models import Receipt
from mimamori.registry.models import School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://\S+(/c/[0-9a-f]+/)")
CHILD = "確認 花子"
SUBJECT = "不審者情報（下校時）"
BODY = "本日15時ごろ、<b>公園</b>付近で\n不審者が目撃されました。"


def send_with_confirmation(school: School, subject: str = SUBJECT, body: str = BODY) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff, subject=subject, body=body, scope=resolve_scope(staff), request_confirmation=True
    )
    sending.send(broadcast)
    while run_queued_tasks():
        pass
    broadcast.refresh_from_db()
    return broadcast


def link_in_mail(sink: Sink, address: str) -> str:
    body = sink.to(address)[0].get_body()
    assert body is not None
    match = LINK.search(body.get_content())
    assert match, "the mail carries a confirmation link"
    return match.group(1)


def text(response: Any) -> str:
    return response.content.decode()


def receipts() -> list[tuple[int, int]]:
    return sorted(Receipt.objects.values_list("registrant_id", "delivery_id"))


def confirmed_counter(broadcast: Broadcast) -> int:
    return sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True))


def test_get_and_head_show_the_mail_and_record_nothing(smtp_sink: Sink) -> None:
    school = make_school(name="みまもり小学校")
    make_registrant(school, ["one@docomo.ne.jp"], child_name=CHILD)
    broadcast = send_with_confirmation(school)
    url = link_in_mail(smtp_sink, "one@docomo.ne.jp")

    for _ in range(3):  # a scanner, a preview, the guardian
        response = Client().get(url)
        assert response.status_code == 200
    page = text(response)
    assert "送信元: みまもり小学校" in page  # the sender, worded as in the mail
    assert SUBJECT in page
    # The body as text, escaped, its line break kept.
    assert "本日15時ごろ、&lt;b&gt;公園&lt;/b&gt;付近で<br>不審者が目撃されました。" in page
    sent = timezone.localtime(broadcast.send_requested_at)
    assert f"{sent.year}年{sent.month}月{sent.day}日" in page
    assert f"{sent:%H:%M}" in page
    assert re.search(
        rf'<form method="post" action="{url}">\s*<button type="submit">確認しました</button>', page
    )
    assert "サポート窓口" in page
    assert "0120-000-000" in page  # the municipality's support desk, as on every guardian page

    assert Client().head(url).status_code == 200
    assert Client().options(url).status_code == 405
    assert receipts() == []
    assert confirmed_counter(broadcast) == 0


def test_post_records_once_and_later_posts_change_nothing(smtp_sink: Sink) -> None:
    school = make_school()
    registrant = make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp"])
    broadcast = send_with_confirmation(school)
    slot1, slot2 = link_in_mail(smtp_sink, "one@docomo.ne.jp"), link_in_mail(smtp_sink, "two@ezweb.ne.jp")

    # A phone browser that kept no cookie from the GET still confirms: no CSRF token needed.
    guardian = Client(enforce_csrf_checks=True)
    response = guardian.post(slot1)
    assert response.status_code == 303
    assert response["Location"] == f"{slot1}?done=1"
    # Stored before the thank-you page is shown.
    first = Delivery.objects.get(broadcast=broadcast, email="one@docomo.ne.jp")
    assert receipts() == [(registrant.pk, first.pk)]
    thanks = guardian.get(response["Location"])
    assert "受信確認ありがとうございました" in text(thanks)
    assert '<form method="post"' not in text(thanks)

    again = guardian.get(slot1)
    assert "受信確認済みです" in text(again)
    assert "確認しました</button>" not in text(again)

    for url in (slot1, slot2):
        later = Client(enforce_csrf_checks=True).post(url)
        assert later.status_code == 200
        assert "すでに受信確認済みです" in text(later)
    assert receipts() == [(registrant.pk, first.pk)]
    assert confirmed_counter(broadcast) == 1


def test_slot_2_confirms_when_slot_1_never_does(smtp_sink: Sink) -> None:
    school = make_school()
    registrant = make_registrant(school, ["one@docomo.ne.jp", "two@ezweb.ne.jp"])
    send_with_confirmation(school)
    slot2 = link_in_mail(smtp_sink, "two@ezweb.ne.jp")
    assert Client().post(slot2).status_code == 303
    assert [r for r, _ in receipts()] == [registrant.pk]
    assert "すでに受信確認済みです" in text(Client().post(link_in_mail(smtp_sink, "one@docomo.ne.jp")))


def test_a_shared_sibling_address_confirms_both_children(smtp_sink: Sink) -> None:
    school = make_school()
    older = make_registrant(school, ["family@au.com"], grade=5)
    younger = make_registrant(school, ["family@au.com", "own@docomo.ne.jp"], grade=2)
    broadcast = send_with_confirmation(school)
    shared = link_in_mail(smtp_sink, "family@au.com")

    page = text(Client().get(shared))
    assert older.child_name not in page
    assert younger.child_name not in page
    assert Client().post(shared).status_code == 303
    assert {r for r, _ in receipts()} == {older.pk, younger.pk}
    assert confirmed_counter(broadcast) == 2

    own = Client().post(link_in_mail(smtp_sink, "own@docomo.ne.jp"))
    assert "すでに受信確認済みです" in text(own)
    assert confirmed_counter(broadcast) == 2


def test_unknown_tampered_and_malformed_links_get_one_identical_404(smtp_sink: Sink) -> None:
    school = make_school(name="みまもり小学校")
    make_registrant(school, ["one@docomo.ne.jp"])
    send_with_confirmation(school)
    token = link_in_mail(smtp_sink, "one@docomo.ne.jp").split("/")[2]
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    without_confirmation = make_school()
    make_registrant(without_confirmation, ["plain@ezweb.ne.jp"])
    candidates = [
        tampered,
        token[:-1],
        token.upper(),
        "0" * 64,
        "x" * 60,
        "abc",
        "%3Cscript%3E",
        "..%2F..%2Fetc",
    ]
    bodies = set()
    for candidate in candidates:
        for method in ("get", "post"):
            response = getattr(Client(), method)(f"/c/{candidate}/")
            assert response.status_code == 404, (candidate, method)
            assert response["Cache-Control"] == "no-store"
            bodies.add(response.content)
    assert len(bodies) == 1
    page = bodies.pop().decode()
    assert "ページが見つかりません" in page
    assert "みまもり小学校" not in page
    assert "サポート窓口" in page
    assert not Receipt.objects.exists()


def test_an_expired_link_explains_and_stores_nothing(smtp_sink: Sink, settings: Any) -> None:
    city = make_municipality(support_name="みどり市 サポート窓口")
    school = make_school(city)
    make_registrant(school, ["one@docomo.ne.jp"], child_name=CHILD)
    broadcast = send_with_confirmation(school)
    url = link_in_mail(smtp_sink, "one@docomo.ne.jp")
    Broadcast.objects.filter(pk=broadcast.pk).update(
        send_requested_at=timezone.now() - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS, seconds=1)
    )
    for method in ("get", "post"):
        response = getattr(Client(), method)(url)
        assert response.status_code == 410
        page = text(response)
        assert "有効期限が切れています" in page
        assert f"{settings.MIMAMORI_CONFIRMATION_DAYS}日間有効" in page
        assert "みどり市 サポート窓口" in page
        assert CHILD not in page
    assert not Receipt.objects.exists()
    assert confirmed_counter(broadcast) == 0


def test_no_page_shows_a_child_or_an_address(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["secret.mama@docomo.ne.jp", "secret.papa@ezweb.ne.jp"], child_name=CHILD)
    send_with_confirmation(school)
    url = link_in_mail(smtp_sink, "secret.mama@docomo.ne.jp")
    client = Client()
    pages = [client.get(url), client.post(url, follow=True), client.get(url), client.post(url)]
    for response in pages:
        assert response.status_code == 200
        page = text(response)
        for secret in (CHILD, "secret.mama", "secret.papa", "docomo", "ezweb"):
            assert secret not in page


def test_private_headers_on_every_answer(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    broadcast = send_with_confirmation(school)
    url = link_in_mail(smtp_sink, "one@docomo.ne.jp")
    client = Client()
    answers = [client.get(url), client.head(url), client.options(url), client.post(url)]
    answers += [client.get(f"{url}?done=1"), client.post(url), client.get("/c/0000/")]
    Broadcast.objects.filter(pk=broadcast.pk).update(send_requested_at=timezone.now() - timedelta(days=400))
    answers.append(client.get(url))
    assert [a.status_code for a in answers] == [200, 200, 405, 303, 200, 200, 404, 410]
    for answer in answers:
        assert answer["Referrer-Policy"] == "no-referrer"
        assert answer["Cache-Control"] == "no-store"
        assert answer["X-Robots-Tag"] == "noindex"


def test_a_fresh_confirmation_is_answered_before_the_rest_of_the_middleware(smtp_sink: Sink) -> None:
    from django.conf import settings
    from django.test import RequestFactory

    from mimamori.portal.confirm import ConfirmButtonMiddleware

    school = make_school()
    registrant = make_registrant(school, ["one@docomo.ne.jp"])
    send_with_confirmation(school)
    url = link_in_mail(smtp_sink, "one@docomo.ne.jp")
    passed_on: list[str] = []

    def rest_of_the_stack(request: Any) -> Any:
        passed_on.append(f"{request.method} {request.path}")
        return "the view's answer"

    button = ConfirmButtonMiddleware(rest_of_the_stack)
    answer = button(RequestFactory().post(url))
    assert (answer.status_code, answer["Location"]) == (303, f"{url}?done=1")
    assert answer["Cache-Control"] == "no-store"
    assert receipts() == [(registrant.pk, Delivery.objects.get().pk)]
    # Everything else is the view's: pages to draw, nothing recorded twice.
    for request in (RequestFactory().post(url), RequestFactory().get(url), RequestFactory().post("/c/00/")):
        assert button(request) == "the view's answer"
    assert passed_on == [f"POST {url}", f"GET {url}", "POST /c/00/"]
    assert receipts() == [(registrant.pk, Delivery.objects.get().pk)]
    assert settings.MIDDLEWARE.index("mimamori.portal.confirm.ConfirmButtonMiddleware") == 1

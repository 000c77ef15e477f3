"""The 安否確認 page at /c/<token>/ (B1): GET shows the choices, POST records an answer per child,
a later POST changes it until answering closes; bare confirmations never count for it."""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from mimamori.accounts.models import Role
from mimamori.broadcasts import preview, sending
from mimamori.broadcasts.models import AudienceGroup, Broadcast, Recipient
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.receipts.answering import close_answers, record_answers
from mimamori.receipts.models import Receipt
from mimamori.receipts.reminders import send_reminder
from mimamori.registry.answers import SAFETY
from mimamori.registry.models import Registrant, School
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://\S+(/c/[0-9a-f]+/)")


def send(school: School, answers: list[str] | None = SAFETY) -> Broadcast:
    staff = make_staff(Role.SCHOOL, school=school)
    broadcast = sending.compose(
        staff,
        subject="地震 安否確認",
        body="震度5弱の地震がありました。",
        scope=resolve_scope(staff),
        request_confirmation=True,
        answers=answers or (),
    )
    sending.send(broadcast)
    run_until_quiet()
    broadcast.refresh_from_db()
    return broadcast


def mail_text(sink: Sink, address: str, index: int = 0) -> str:
    body = sink.to(address)[index].get_body()
    assert body is not None
    return str(body.get_content())


def link(sink: Sink, address: str) -> str:
    match = LINK.search(mail_text(sink, address))
    assert match
    return match.group(1)


def page(response: Any) -> str:
    return response.content.decode()


def answers() -> dict[int, int | None]:
    return dict(Receipt.objects.values_list("registrant_id", "answer"))


def counters(broadcast: Broadcast) -> tuple[dict[tuple[int, int], int], int]:
    counts = {
        (group.grade, answer): count
        for group in AudienceGroup.objects.filter(broadcast=broadcast)
        for answer, count in group.answer_counts().items()
    }
    confirmed = sum(AudienceGroup.objects.filter(broadcast=broadcast).values_list("confirmed", flat=True))
    return counts, confirmed


def siblings() -> tuple[School, Registrant, Registrant]:
    school = make_school(name="みまもり小学校")
    elder = make_registrant(school, ["family@docomo.ne.jp"], grade=5, class_name="2", child_name="見守 一郎")
    younger = make_registrant(
        school, ["family@docomo.ne.jp"], grade=2, class_name="1", child_name="見守 花子"
    )
    return school, elder, younger


def test_the_mail_lists_the_choices_and_asks_for_an_answer(smtp_sink: Sink) -> None:
    school, _, _ = siblings()
    broadcast = send(school)
    text = mail_text(smtp_sink, "family@docomo.ne.jp")
    assert "■安否確認（回答のお願い）" in text
    assert "■受信確認のお願い" not in text
    assert "・無事です\n・けがをしています\n・支援が必要です\n" in text
    assert "下記のリンクから回答してください" in text
    # The console's preview is the same builder, so it shows the same block.
    sample = preview.sample(broadcast)
    assert sample is not None
    assert "■安否確認（回答のお願い）" in sample.body
    assert "・支援が必要です" in sample.body


def test_get_records_nothing_post_records_each_sibling_and_a_later_post_changes(smtp_sink: Sink) -> None:
    school, elder, younger = siblings()
    broadcast = send(school)
    url = link(smtp_sink, "family@docomo.ne.jp")

    for _ in range(3):  # a scanner, a preview, the guardian
        response = Client().get(url)
        assert response.status_code == 200
    shown = page(response)
    assert answers() == {}
    # One group of choices per child, labelled as the mail names the child.
    assert "みまもり小学校 2年1組 見守 花子 さん" in shown
    assert "みまもり小学校 5年2組 見守 一郎 さん" in shown
    assert shown.index("見守 花子") < shown.index("見守 一郎")  # in the mail's order
    assert 'method="post"' in shown
    for index, choice in enumerate(SAFETY):
        assert f'name="answer-{elder.pk}" value="{index}"' in shown
        assert f'name="answer-{younger.pk}" value="{index}"' in shown
        assert choice in shown

    posted = Client(enforce_csrf_checks=True).post(
        url, {f"answer-{elder.pk}": "0", f"answer-{younger.pk}": "1"}
    )
    assert posted.status_code == 303
    assert posted["Location"] == f"{url}?done=1"
    assert answers() == {elder.pk: 0, younger.pk: 1}
    assert counters(broadcast) == ({(5, 0): 1, (2, 1): 1}, 2)

    done = page(Client().get(posted["Location"]))
    assert "回答ありがとうございました" in done
    assert re.search(r"見守 一郎 さん</dt>\s*<dd>無事です</dd>", done)
    assert re.search(r"見守 花子 さん</dt>\s*<dd>けがをしています</dd>", done)
    assert "回答を変更する" in done
    assert f'name="answer-{younger.pk}" value="1" checked' in done

    # The younger one needs help after all: the answer moves, nothing is counted twice.
    changed = Client().post(url, {f"answer-{younger.pk}": "2"})
    assert changed.status_code == 303
    assert answers() == {elder.pk: 0, younger.pk: 2}
    assert counters(broadcast) == ({(5, 0): 1, (2, 2): 1}, 2)


def test_missing_and_wrong_choices_show_the_page_again_and_change_nothing(smtp_sink: Sink) -> None:
    school, elder, younger = siblings()
    send(school)
    url = link(smtp_sink, "family@docomo.ne.jp")
    outsider = make_registrant(school, ["other@docomo.ne.jp"])

    bare = Client().post(url)  # the 「確認しました」 button's POST, or the form sent without a choice
    assert bare.status_code == 400
    assert "お子様の回答を選んでから、ボタンを押してください。" in page(bare)
    assert 'name="answer-' in page(bare)
    for form in (
        {f"answer-{elder.pk}": "3"},  # out of range
        {f"answer-{elder.pk}": "x"},
        {f"answer-{elder.pk}": "-1"},
        {f"answer-{elder.pk}": "0", f"answer-{younger.pk}": "9"},
    ):
        wrong = Client().post(url, form)
        assert wrong.status_code == 400
        assert "表示されている回答の中から選んでください。" in page(wrong)
    # A child the mail does not name.
    stranger = Client().post(url, {f"answer-{outsider.pk}": "0"})
    assert stranger.status_code == 400
    assert answers() == {}
    assert sum(AudienceGroup.objects.values_list("confirmed", flat=True)) == 0


def test_closed_answering_shows_the_recorded_answer_and_refuses_changes(smtp_sink: Sink) -> None:
    school = make_school()
    child = make_registrant(school, ["one@docomo.ne.jp"], child_name="回答 太郎")
    broadcast = send(school)
    url = link(smtp_sink, "one@docomo.ne.jp")
    assert Client().post(url, {f"answer-{child.pk}": "1"}).status_code == 303
    assert close_answers(broadcast)

    for response in (Client().get(url), Client().post(url, {f"answer-{child.pk}": "0"})):
        assert response.status_code == 200
        shown = page(response)
        assert "回答の受付は終了しました" in shown
        assert re.search(r"回答 太郎 さん</dt>\s*<dd>けがをしています</dd>", shown)
        assert 'name="answer-' not in shown
    assert answers() == {child.pk: 1}


def test_an_expired_link_refuses_answers(smtp_sink: Sink, settings: Any) -> None:
    school = make_school()
    child = make_registrant(school, ["one@docomo.ne.jp"])
    broadcast = send(school)
    url = link(smtp_sink, "one@docomo.ne.jp")
    Broadcast.objects.filter(pk=broadcast.pk).update(
        send_requested_at=timezone.now() - timedelta(days=settings.MIMAMORI_CONFIRMATION_DAYS, seconds=1)
    )
    for response in (Client().get(url), Client().post(url, {f"answer-{child.pk}": "0"}), Client().post(url)):
        assert response.status_code == 410
        assert "有効期限" in page(response) or "期限" in page(response)
    assert answers() == {}


def test_unknown_tokens_keep_the_one_404_page(smtp_sink: Sink) -> None:
    school = make_school()
    child = make_registrant(school, ["one@docomo.ne.jp"])
    send(school)
    url = link(smtp_sink, "one@docomo.ne.jp")
    tampered = url[:-3] + ("0" if url[-3] != "0" else "1") + url[-2:]
    reference = Client().get("/c/" + "0" * 40 + "/")
    assert reference.status_code == 404
    for response in (Client().get(tampered), Client().post(tampered, {f"answer-{child.pk}": "0"})):
        assert response.status_code == 404
        assert response.content == reference.content
    assert answers() == {}


def test_a_bare_confirmation_broadcast_still_confirms_through_the_fast_path(smtp_sink: Sink) -> None:
    school = make_school()
    child = make_registrant(school, ["one@docomo.ne.jp"])
    broadcast = send(school, answers=None)
    text = mail_text(smtp_sink, "one@docomo.ne.jp")
    assert "■受信確認のお願い" in text
    assert "■安否確認" not in text
    url = link(smtp_sink, "one@docomo.ne.jp")
    assert 'name="answer-' not in page(Client().get(url))
    response = Client().post(url)
    assert response.status_code == 303
    assert answers() == {child.pk: None}
    assert counters(broadcast) == ({}, 1)


def test_the_reminder_asks_those_who_have_not_answered(smtp_sink: Sink) -> None:
    school = make_school()
    answered = make_registrant(school, ["done@docomo.ne.jp"])
    make_registrant(school, ["late@docomo.ne.jp"])
    broadcast = send(school)
    assert (
        Client().post(link(smtp_sink, "done@docomo.ne.jp"), {f"answer-{answered.pk}": "0"}).status_code == 303
    )
    staff = make_staff(Role.SCHOOL, school=school)
    send_reminder(broadcast, staff)
    run_until_quiet()
    assert len(smtp_sink.to("done@docomo.ne.jp")) == 1
    again = mail_text(smtp_sink, "late@docomo.ne.jp", 1)
    assert "まだ回答がお済みでないため" in again
    assert "・無事です" in again
    assert "下記のリンクから回答してください" in again


@pytest.mark.django_db(transaction=True)
def test_concurrent_answers_and_changes_keep_the_counters_exact(smtp_sink: Sink) -> None:
    """Guardians of one class, the two addresses of one child and a sibling address, answering
    and changing answers at the same moment on real connections: every counter equals a
    recount from the receipts."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("concurrent connections need PostgreSQL")
    school = make_school()
    for n in range(6):  # one class, some children with two addresses
        addresses = [f"p{n}a@docomo.ne.jp"] + ([f"p{n}b@au.com"] if n % 2 else [])
        make_registrant(school, addresses, grade=1, class_name="1")
    make_registrant(school, ["family@docomo.ne.jp"], grade=1, class_name="1")  # siblings of two classes
    make_registrant(school, ["family@docomo.ne.jp"], grade=1, class_name="2")
    # Siblings of two classes, each with both addresses: two mails that move the same two
    # receipts and the same two class rows at once (a lock order that differed would deadlock).
    make_registrant(school, ["kin@docomo.ne.jp", "kin@au.com"], grade=1, class_name="2")
    make_registrant(school, ["kin@docomo.ne.jp", "kin@au.com"], grade=1, class_name="1")
    for _ in range(2):  # twins: one mail moves two children of one class at once
        make_registrant(school, ["twins@docomo.ne.jp"], grade=1, class_name="1")
    broadcast = send(school)
    mails = list(
        Recipient.objects.filter(broadcast=broadcast)
        .values_list("delivery__confirmation_token", "registrant_id")
        .order_by("delivery_id")
    )
    by_token: dict[str, list[int]] = {}
    for token, registrant_id in mails:
        by_token.setdefault(token or "", []).append(registrant_id)
    tokens = list(by_token)
    rounds, workers = 40, 8
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []

    def guardian(seed: int) -> None:
        chance = random.Random(seed)
        try:
            barrier.wait()
            for _ in range(rounds):
                token = chance.choice(tokens)
                chosen = {registrant: chance.randrange(len(SAFETY)) for registrant in by_token[token]}
                assert record_answers(token, chosen) is not None
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=guardian, args=(seed,)) for seed in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    group_of = dict(Recipient.objects.filter(broadcast=broadcast).values_list("registrant_id", "group_id"))
    recount: Counter[tuple[int, int | None]] = Counter()
    confirmed: Counter[int] = Counter()
    for registrant_id, answer in Receipt.objects.filter(broadcast=broadcast).values_list(
        "registrant_id", "answer"
    ):
        recount[group_of[registrant_id], answer] += 1
        confirmed[group_of[registrant_id]] += 1
    counted = {
        (group.pk, answer): count
        for group in AudienceGroup.objects.filter(broadcast=broadcast)
        for answer, count in group.answer_counts().items()
    }
    assert counted == dict(recount)
    assert sum(recount.values()) == Registrant.objects.count() == 12  # everybody answered at least once
    assert {
        g.pk: g.confirmed for g in AudienceGroup.objects.filter(broadcast=broadcast) if g.confirmed
    } == dict(confirmed)


def test_the_history_shows_each_childs_answer_and_the_link_to_change_it(smtp_sink: Sink) -> None:
    school, elder, younger = siblings()
    broadcast = send(school)
    url = link(smtp_sink, "family@docomo.ne.jp")

    def history_of(registrant: Registrant) -> str:
        client = Client()
        client.force_login(registrant.account)
        return page(client.get("/portal/history/"))

    assert "未回答" in history_of(elder)
    assert "安否確認に回答する" in history_of(elder)
    assert Client().post(url, {f"answer-{elder.pk}": "0", f"answer-{younger.pk}": "2"}).status_code == 303
    assert "回答済み: 無事です" in history_of(elder)
    assert "回答済み: 支援が必要です" in history_of(younger)
    assert url in history_of(younger)  # still open: the answer can change
    close_answers(broadcast)
    assert url not in history_of(younger)
    assert "回答済み: 支援が必要です" in history_of(younger)


def test_the_middleware_records_answers_and_passes_on_everything_else(smtp_sink: Sink) -> None:
    from django.test import RequestFactory

    from mimamori.portal.confirm import ConfirmButtonMiddleware

    school, elder, younger = siblings()
    send(school)
    url = link(smtp_sink, "family@docomo.ne.jp")
    passed_on: list[str] = []

    def rest_of_the_stack(request: Any) -> Any:
        passed_on.append(request.method)
        return "the view's answer"

    button = ConfirmButtonMiddleware(rest_of_the_stack)
    form = "application/x-www-form-urlencoded"
    answer = button(
        RequestFactory().post(url, f"answer-{elder.pk}=2&answer-{younger.pk}=0", content_type=form)
    )
    assert (answer.status_code, answer["Location"]) == (303, f"{url}?done=1")
    assert answer["Cache-Control"] == "no-store"
    assert answers() == {elder.pk: 2, younger.pk: 0}
    # A multipart form goes through Django's parser and is answered the same way.
    multipart = button(RequestFactory().post(url, {f"answer-{younger.pk}": "1"}))
    assert multipart.status_code == 303
    assert answers() == {elder.pk: 2, younger.pk: 1}
    # No choice, a wrong one, a bare button: the view draws the page, nothing recorded.
    for request in (
        RequestFactory().post(url),
        RequestFactory().post(url, f"answer-{elder.pk}=7", content_type=form),
        RequestFactory().post(url, f"answer-{elder.pk}=x", content_type=form),
        RequestFactory().post(url, "&".join(f"f{n}=1" for n in range(100)), content_type=form),
    ):
        assert button(request) == "the view's answer"
    assert passed_on == ["POST"] * 4
    assert answers() == {elder.pk: 2, younger.pk: 1}

"""Console broadcasts: compose, preview, send, watch the counts, retry what failed; scope kept."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from mimamori.accounts.models import Role, User
from mimamori.broadcasts import sending
from mimamori.broadcasts.models import Broadcast, BroadcastStatus
from mimamori.broadcasts.targeting import resolve_scope
from mimamori.registry.models import School
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_until_quiet

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


def signed_in(user: User) -> Client:
    client = Client()
    client.force_login(user, backend=BACKEND)
    return client


def lowered(sink: Sink) -> dict[str, int]:
    return {address.lower(): n for address, n in sink.copies().items()}


def compose(client: Client, **fields: Any) -> Any:
    data = {"subject": "不審者情報", "body": "下校時に注意してください。", **fields}
    return client.post(reverse("console:broadcast_new"), data)


def draft_for(staff: User, school: School, subject: str = "お知らせ") -> Broadcast:
    scope = resolve_scope(staff, school_ids=[school.pk])
    return sending.compose(staff, subject=subject, body="本文です。", scope=scope)


def test_school_staff_compose_preview_send_and_watch_it_arrive(smtp_sink: Sink) -> None:
    school = make_school(name="緑小学校", local="midori-sho")
    make_registrant(school, ["family@docomo.ne.jp", "papa@ezweb.ne.jp"], child_name="見守 一郎", grade=5)
    make_registrant(school, ["FAMILY@docomo.ne.jp"], child_name="見守 花子", grade=2)
    make_registrant(school, ["off@docomo.ne.jp"], receive_broadcasts=False)
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)

    form = client.get(reverse("console:broadcast_new"))
    assert "緑小学校" in form.content.decode()
    response = compose(client, urgent="on")
    broadcast = Broadcast.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("console:broadcast", args=[broadcast.pk])
    assert broadcast.urgent
    assert list(broadcast.schools.all()) == [school]

    preview = client.get(response["Location"]).content.decode()
    sender = f"緑小学校 &lt;midori-sho@{school.municipality.mail_domain}&gt;"
    assert sender in preview
    assert "【緊急】不審者情報" in preview
    assert "下校時に注意してください。" in preview
    # The sample is the first address in the audience, naming both siblings it is sent for.
    assert "family@docomo.ne.jp" in preview.lower()
    assert "見守 一郎" in preview
    assert "見守 花子" in preview
    assert "2人の登録者、2件のメールアドレス" in preview
    assert "下書き" in preview
    assert "送信する" in preview

    sent = client.post(reverse("console:broadcast_send", args=[broadcast.pk]), follow=True)
    assert "送信を開始しました" in sent.content.decode()
    assert "配信中" in sent.content.decode()
    assert '<meta http-equiv="refresh" content="3">' in sent.content.decode()
    run_until_quiet()

    assert lowered(smtp_sink) == {"family@docomo.ne.jp": 1, "papa@ezweb.ne.jp": 1}
    mail = smtp_sink.to("papa@ezweb.ne.jp")[0]
    assert mail["Subject"] == "【緊急】不審者情報"
    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "配信済み" in page
    assert "送信済み" in page
    assert 'data-count="sent">2<' in page
    assert "refresh" not in page
    progress = client.get(reverse("console:broadcast_progress", args=[broadcast.pk])).json()
    assert progress == {
        "status": "sent",
        "registrants": 2,
        "messages": 2,
        "sent": 2,
        "failed": 0,
        "pending": 0,
        "suppressed": 0,
    }

    again = client.post(reverse("console:broadcast_send", args=[broadcast.pk]), follow=True)
    assert "既に送信されています" in again.content.decode()
    run_until_quiet()
    assert lowered(smtp_sink) == {"family@docomo.ne.jp": 1, "papa@ezweb.ne.jp": 1}


def test_empty_subject_and_body_are_refused_in_japanese() -> None:
    staff = make_staff(Role.SCHOOL, school=make_school())
    response = compose(signed_in(staff), subject="  ", body="")
    assert response.status_code == 200
    page = response.content.decode()
    assert "件名を入力してください。" in page
    assert "本文を入力してください。" in page
    assert not Broadcast.objects.exists()


def test_school_staff_cannot_target_another_school() -> None:
    school, other = make_school(), make_school()
    staff = make_staff(Role.SCHOOL, school=school)
    response = compose(signed_in(staff), schools=[str(other.pk)])
    assert response.status_code == 200
    assert "送信できるのは自分の担当範囲の学校だけです。" in response.content.decode()
    assert not Broadcast.objects.exists()


def test_municipality_staff_choose_schools_of_their_city() -> None:
    city = make_municipality(name="岩見沢市")
    east, west = make_school(city, name="東小学校"), make_school(city, name="西小学校")
    elsewhere = make_school(name="外部小学校")
    client = signed_in(make_staff(Role.MUNICIPALITY, municipality=city))

    form = client.get(reverse("console:broadcast_new")).content.decode()
    assert "東小学校" in form
    assert "西小学校" in form
    assert "外部小学校" not in form

    refused = compose(client, schools=[str(east.pk), str(elsewhere.pk)])
    assert refused.status_code == 200
    assert not Broadcast.objects.exists()

    assert compose(client, schools=[str(west.pk)], grades=["1", "2"], classes="1、2").status_code == 302
    chosen = Broadcast.objects.get()
    assert list(chosen.schools.all()) == [west]
    assert (chosen.grades, chosen.classes) == ([1, 2], ["1", "2"])

    assert compose(client).status_code == 302  # none checked: the whole city
    whole = Broadcast.objects.exclude(pk=chosen.pk).get()
    assert list(whole.municipalities.all()) == [city]
    assert not whole.schools.exists()
    page = client.get(reverse("console:broadcast", args=[whole.pk])).content.decode()
    assert "岩見沢市の全校" in page
    assert east.name not in page  # named by the city, not school by school


def test_centre_must_choose_a_municipality() -> None:
    city = make_municipality(name="滝川市")
    client = signed_in(make_staff(Role.CENTRE))
    refused = compose(client)
    assert refused.status_code == 200
    assert "市町村か学校を少なくとも一つ選んでください。" in refused.content.decode()
    assert not Broadcast.objects.exists()
    assert compose(client, municipalities=[city.code]).status_code == 302
    assert list(Broadcast.objects.get().municipalities.all()) == [city]


def test_confirmation_is_offered_only_where_every_municipality_allows_it() -> None:
    allows = make_school(make_municipality(confirmation_links_enabled=True))
    forbids = make_school(make_municipality(confirmation_links_enabled=False))
    offered = signed_in(make_staff(Role.SCHOOL, school=allows))
    assert "受信確認を求める" in offered.get(reverse("console:broadcast_new")).content.decode()
    assert compose(offered, request_confirmation="on").status_code == 302
    assert Broadcast.objects.get().request_confirmation

    not_offered = signed_in(make_staff(Role.SCHOOL, school=forbids))
    assert "受信確認を求める" not in not_offered.get(reverse("console:broadcast_new")).content.decode()
    assert compose(not_offered, request_confirmation="on").status_code == 302
    assert not Broadcast.objects.latest("pk").request_confirmation
    centre = signed_in(make_staff(Role.CENTRE))
    assert "受信確認を求める" not in centre.get(reverse("console:broadcast_new")).content.decode()


def test_staff_of_another_school_get_404_everywhere() -> None:
    school, other = make_school(), make_school()
    broadcast = draft_for(make_staff(Role.SCHOOL, school=school), school, subject="秘密のお知らせ")
    outsider = signed_in(make_staff(Role.SCHOOL, school=other))
    assert outsider.get(reverse("console:broadcast", args=[broadcast.pk])).status_code == 404
    assert outsider.get(reverse("console:broadcast_progress", args=[broadcast.pk])).status_code == 404
    assert outsider.post(reverse("console:broadcast_send", args=[broadcast.pk])).status_code == 404
    assert outsider.post(reverse("console:broadcast_retry", args=[broadcast.pk])).status_code == 404
    assert "秘密のお知らせ" not in outsider.get(reverse("console:broadcasts")).content.decode()
    broadcast.refresh_from_db()
    assert broadcast.status == BroadcastStatus.DRAFT


def test_failed_addresses_are_shown_with_the_reply_and_can_be_retried(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["nobody@docomo.ne.jp", "fine@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)
    broadcast = draft_for(staff, school)
    smtp_sink.refusals["nobody@docomo.ne.jp"] = ["552 5.2.2 Mailbox full"]
    client.post(reverse("console:broadcast_send", args=[broadcast.pk]))
    run_until_quiet()

    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "nobody@docomo.ne.jp" in page
    assert "552 5.2.2 Mailbox full" in page
    assert "失敗した宛先に再送" in page
    assert 'data-count="failed">1<' in page

    smtp_sink.refusals.clear()
    retried = client.post(reverse("console:broadcast_retry", args=[broadcast.pk]), follow=True)
    assert "失敗した1件の宛先に再送しています。" in retried.content.decode()
    run_until_quiet()
    assert smtp_sink.copies() == {"nobody@docomo.ne.jp": 1, "fine@docomo.ne.jp": 1}
    progress = client.get(reverse("console:broadcast_progress", args=[broadcast.pk])).json()
    assert (progress["status"], progress["sent"], progress["failed"]) == ("sent", 2, 0)
    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert "失敗した宛先に再送" not in page


def test_the_list_shows_counts_in_a_fixed_number_of_queries(
    smtp_sink: Sink, django_assert_max_num_queries: DjangoAssertNumQueries
) -> None:
    school = make_school()
    make_registrant(school, ["a@docomo.ne.jp", "b@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)
    sent = draft_for(staff, school, subject="配信したお知らせ")
    sending.send(sent)
    run_until_quiet()
    draft_for(staff, school, subject="下書きのお知らせ")

    def queries() -> int:
        with django_assert_max_num_queries(50) as captured:
            page = client.get(reverse("console:broadcasts")).content.decode()
        assert "配信したお知らせ" in page
        assert "下書きのお知らせ" in page
        return len(captured)

    few = queries()
    for n in range(8):
        urgent = draft_for(staff, school, subject=f"追加{n}")
        urgent.urgent = True
        urgent.save()
    assert queries() == few
    page = client.get(reverse("console:broadcasts")).content.decode()
    assert "2 / 2" in page  # sent / mails of the sent one
    assert "【緊急】" in page


def test_the_preview_shows_markup_in_the_message_as_text() -> None:
    school = make_school()
    make_registrant(school, ["mama@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    scope = resolve_scope(staff)
    draft = sending.compose(staff, subject="s", body="<script>alert(1)</script>", scope=scope)
    page = signed_in(staff).get(reverse("console:broadcast", args=[draft.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert f"&lt;{school.sender_address}&gt;" in page


def test_the_page_counts_registrants_and_mails_while_the_fan_out_is_still_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After 送信する the page showed 登録者 0 until the whole fan-out ended: the registrants
    were counted only then. The classes are counted with the first chunk; the page uses them."""
    from mimamori.broadcasts import fanout

    monkeypatch.setattr(fanout, "CHUNK_SIZE", 2)
    monkeypatch.setattr(fanout, "SLICE_CHUNKS", 1)
    monkeypatch.setattr(fanout, "MAX_SLICE_CHUNKS", 1)
    school = make_school()
    for n in range(5):
        make_registrant(school, [f"p{n}@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = signed_in(staff)
    broadcast = draft_for(staff, school)
    client.post(reverse("console:broadcast_send", args=[broadcast.pk]))

    fanout.fan_out(broadcast.pk)  # the first slice: one chunk of two addresses, more to come
    assert Broadcast.objects.get(pk=broadcast.pk).fanned_out_at is None
    url = reverse("console:broadcast_progress", args=[broadcast.pk])
    progress = client.get(url).json()
    # The registrants of the mails written so far.
    assert (progress["status"], progress["registrants"], progress["messages"]) == ("sending", 2, 2)
    page = client.get(reverse("console:broadcast", args=[broadcast.pk])).content.decode()
    assert 'data-count="registrants">2<' in page
    assert 'data-count="messages">2<' in page

    fanout.fan_out(broadcast.pk, 1)  # the second slice: now every class is counted
    assert Broadcast.objects.get(pk=broadcast.pk).fanned_out_at is None
    progress = client.get(url).json()
    assert (progress["status"], progress["registrants"], progress["messages"]) == ("sending", 5, 4)

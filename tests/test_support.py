"""S13, the support desk: inquiries logged in or not, the copy to the support address, the
rate and length limits, staff scope, and answers by mail."""

from __future__ import annotations

from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.registry.models import Municipality
from mimamori.support.models import MAX_BODY, Inquiry, InquiryStatus
from tests.cast import make_municipality, make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.tasks import run_queued_tasks

pytestmark = pytest.mark.django_db


def _form(municipality: Municipality | None = None, **fields: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "佐藤 花子",
        "reply_to": "hanako.mama@docomo.ne.jp",
        "subject": "メールが届きません",
        "body": "昨日の不審者情報のメールが届いていないようです。",
    }
    if municipality is not None:
        data["municipality"] = municipality.pk
    data.update(fields)
    return data


def _text(response: Any) -> str:
    return response.content.decode()


def _display_name(raw: bytes) -> str:
    """The From display name as RFC 2047 reads it: adjacent encoded words joined without the
    folding whitespace (the default policy's parser puts a space between them)."""
    value = BytesParser(policy=policy.compat32).parsebytes(raw)["From"]
    return str(make_header(decode_header(value.rsplit("<", 1)[0]))).strip()


def _body(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


def test_an_anonymous_inquiry_is_stored_and_copied_to_the_support_address(smtp_sink: Sink) -> None:
    city = make_municipality("ask-city", support_email="desk@ask-city.example.jp")
    make_municipality("other-city")
    response = Client().post(reverse("portal:inquiry"), _form(city))
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:inquiry_thanks")
    inquiry = Inquiry.objects.get()
    assert inquiry.municipality == city
    assert inquiry.registrant is None
    assert inquiry.reply_to == "hanako.mama@docomo.ne.jp"
    assert inquiry.status == InquiryStatus.OPEN
    assert inquiry.ip_address == "127.0.0.1"

    run_queued_tasks()
    [copy] = smtp_sink.to("desk@ask-city.example.jp")
    assert "メールが届きません" in str(copy["Subject"])
    assert "昨日の不審者情報" in _body(copy)
    assert copy["Reply-To"] == "hanako.mama@docomo.ne.jp"
    assert copy["From"].addresses[0].domain == city.mail_domain

    thanks = Client().get(reverse("portal:inquiry_thanks"))
    assert "お問い合わせを受け付けました" in _text(thanks)


def test_an_anonymous_inquiry_needs_a_reply_address_and_a_municipality() -> None:
    city = make_municipality()
    response = Client().post(reverse("portal:inquiry"), _form(None, reply_to=""))
    page = _text(response)
    assert response.status_code == 200
    assert "回答を送るメールアドレスを入力してください" in page or "この項目は必須です" in page
    response = Client().post(reverse("portal:inquiry"), _form(city, reply_to="a..b@docomo.ne.jp"))
    assert "連続" in _text(response)
    assert not Inquiry.objects.exists()


def test_a_logged_in_guardian_asks_their_own_municipality_and_gets_the_answer_at_address_1(
    smtp_sink: Sink,
) -> None:
    city = make_municipality("home-city")
    elsewhere = make_municipality("elsewhere")
    registrant = make_registrant(make_school(city), ["mama@ezweb.ne.jp", "papa@gmail.com"])
    run_queued_tasks()  # the registration mails
    client = Client()
    client.force_login(registrant.account)
    form = client.get(reverse("portal:inquiry"))
    assert 'name="municipality"' not in _text(form)
    response = client.post(reverse("portal:inquiry"), _form(elsewhere, reply_to=""))
    assert response.status_code == 302
    inquiry = Inquiry.objects.get()
    assert inquiry.municipality == city
    assert inquiry.registrant == registrant
    run_queued_tasks()
    [copy] = smtp_sink.to(city.support_email)
    assert registrant.login_id in _body(copy)

    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    console = Client()
    console.force_login(staff)
    console.post(reverse("console:inquiry", args=[inquiry.pk]), {"answer": "設定をご確認ください。"})
    run_queued_tasks()
    *_registration, acknowledgement, answer = smtp_sink.to("mama@ezweb.ne.jp")
    assert "お問い合わせを受け付けました" in str(acknowledgement["Subject"])
    assert "設定をご確認ください。" in _body(answer)
    # From the desk, on the municipality's mail domain: not the school's sender (issue 14).
    assert answer["From"].addresses[0].addr_spec == f"support@{city.mail_domain}"
    assert answer["From"].addresses[0].addr_spec != registrant.school.sender_address
    assert not smtp_sink.to("papa@gmail.com")[1:]  # only the registration mail went there


def test_the_sixth_inquiry_in_an_hour_is_refused_and_nothing_is_stored(settings: Any) -> None:
    settings.MIMAMORI_INQUIRY_LIMIT_PER_HOUR = 5
    city = make_municipality()
    client = Client()
    for n in range(5):
        response = client.post(reverse("portal:inquiry"), _form(city, subject=f"質問{n}"))
        assert response.status_code == 302
    response = client.post(reverse("portal:inquiry"), _form(city, subject="質問6"))
    assert response.status_code == 200
    assert "1時間以内のお問い合わせが多すぎます" in _text(response)
    assert Inquiry.objects.count() == 5
    assert not Inquiry.objects.filter(subject="質問6").exists()
    # Another network address is not held back by this one.
    other = Client(REMOTE_ADDR="192.0.2.10")
    assert other.post(reverse("portal:inquiry"), _form(city)).status_code == 302


def test_a_logged_in_guardian_is_limited_per_registrant_whatever_the_address(settings: Any) -> None:
    settings.MIMAMORI_INQUIRY_LIMIT_PER_HOUR = 2
    registrant = make_registrant(addresses=["mama@ezweb.ne.jp"])
    for n in range(3):
        client = Client(REMOTE_ADDR=f"192.0.2.{n + 1}")
        client.force_login(registrant.account)
        response = client.post(reverse("portal:inquiry"), _form())
    assert "多すぎます" in _text(response)
    assert Inquiry.objects.filter(registrant=registrant).count() == 2


def test_an_over_long_message_is_refused() -> None:
    city = make_municipality()
    response = Client().post(reverse("portal:inquiry"), _form(city, body="あ" * (MAX_BODY + 1)))
    assert response.status_code == 200
    assert "4000文字以内" in _text(response)
    assert not Inquiry.objects.exists()
    assert Client().post(reverse("portal:inquiry"), _form(city, body="あ" * MAX_BODY)).status_code == 302


def _inquiry(city: Municipality, **fields: Any) -> Inquiry:
    values: dict[str, Any] = {
        "name": "山田",
        "reply_to": "yamada@docomo.ne.jp",
        "subject": "質問",
        "body": "本文",
    }
    return Inquiry.objects.create(municipality=city, **{**values, **fields})


def test_staff_of_another_municipality_can_neither_see_nor_answer(smtp_sink: Sink) -> None:
    city, other = make_municipality(), make_municipality()
    inquiry = _inquiry(city, subject="秘密の質問")
    outsider = Client()
    outsider.force_login(make_staff(Role.MUNICIPALITY, municipality=other))
    assert "秘密の質問" not in _text(outsider.get(reverse("console:inquiries")))
    url = reverse("console:inquiry", args=[inquiry.pk])
    assert outsider.get(url).status_code == 404
    assert outsider.post(url, {"answer": "回答"}).status_code == 404
    inquiry.refresh_from_db()
    assert inquiry.status == InquiryStatus.OPEN
    run_queued_tasks()
    assert not smtp_sink.to("yamada@docomo.ne.jp")

    centre = Client()
    centre.force_login(make_staff(Role.CENTRE))
    assert "秘密の質問" in _text(centre.get(reverse("console:inquiries")))


def test_school_staff_see_only_inquiries_of_their_own_schools_guardians() -> None:
    city = make_municipality()
    school, other_school = make_school(city), make_school(city)
    own = _inquiry(city, subject="自校の質問", registrant=make_registrant(school))
    _inquiry(city, subject="他校の質問", registrant=make_registrant(other_school))
    _inquiry(city, subject="匿名の質問")
    client = Client()
    client.force_login(make_staff(Role.SCHOOL, school=school))
    page = _text(client.get(reverse("console:inquiries")))
    assert "自校の質問" in page
    assert "他校の質問" not in page
    assert "匿名の質問" not in page
    assert client.get(reverse("console:inquiry", args=[own.pk])).status_code == 200


def test_answering_sends_the_mail_marks_answered_and_audits(smtp_sink: Sink) -> None:
    city = make_municipality()
    inquiry = _inquiry(city)
    open_one = _inquiry(city, subject="まだの質問")
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    client = Client()
    client.force_login(staff)
    listing = _text(client.get(reverse("console:inquiries") + "?status=open"))
    assert "まだの質問" in listing
    response = client.post(
        reverse("console:inquiry", args=[inquiry.pk]), {"answer": "受信設定をご確認ください。"}
    )
    assert response.status_code == 302
    assert "回答をメールで送信し" in _text(client.get(response["Location"]))
    inquiry.refresh_from_db()
    assert inquiry.status == InquiryStatus.ANSWERED
    assert inquiry.answered_by == staff
    assert inquiry.answered_at is not None
    event = AuditEvent.objects.get(action="inquiry.answered")
    assert event.actor == staff
    assert event.municipality_id == city.pk
    assert event.target == f"inquiry {inquiry.pk}"

    run_queued_tasks()
    [mail] = smtp_sink.to("yamada@docomo.ne.jp")
    assert "お問い合わせへの回答" in str(mail["Subject"])
    assert "受信設定をご確認ください。" in _body(mail)
    assert mail["From"].addresses[0].domain == city.mail_domain

    # A second answer (say, from another tab) changes nothing and sends nothing.
    client.post(reverse("console:inquiry", args=[inquiry.pk]), {"answer": "二度目"})
    run_queued_tasks()
    inquiry.refresh_from_db()
    assert inquiry.answer == "受信設定をご確認ください。"
    assert len(smtp_sink.to("yamada@docomo.ne.jp")) == 1
    assert AuditEvent.objects.filter(action="inquiry.answered").count() == 1

    answered = _text(client.get(reverse("console:inquiries") + "?status=answered"))
    assert "まだの質問" not in answered
    assert open_one.status == InquiryStatus.OPEN


def test_no_copy_is_sent_when_the_municipality_has_no_support_address(smtp_sink: Sink) -> None:
    city = make_municipality(support_email="")
    assert Client().post(reverse("portal:inquiry"), _form(city)).status_code == 302
    run_queued_tasks()
    # No copy to a desk without an address; the guardian still gets the acknowledgement.
    assert smtp_sink.copies() == {"hanako.mama@docomo.ne.jp": 1}


def test_the_login_page_and_every_portal_page_link_to_the_form_and_the_faq() -> None:
    page = _text(Client().get(reverse("portal:login")))
    assert reverse("portal:inquiry") in page
    assert reverse("portal:help") in page
    client = Client()
    client.force_login(make_registrant().account)
    for name in ("portal:home", "portal:addresses", "portal:options"):
        page = _text(client.get(reverse(name)))
        assert reverse("portal:inquiry") in page, name
        assert reverse("portal:help") in page, name


# --- the desk's sender, the acknowledgement and its reference number (issue 14) ----------------


def test_the_answer_comes_from_the_desk_address_with_one_clean_name(smtp_sink: Sink) -> None:
    city = make_municipality(
        "desk-city",
        name="岩見沢市",
        mail_domain="mail.desk-city.example.jp",
        support_name="児童見守りシステム サポート窓口（岩見沢市）",
        support_email="madoguchi@mail.desk-city.example.jp",
    )
    inquiry = _inquiry(city)
    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    client = Client()
    client.force_login(staff)
    client.post(reverse("console:inquiry", args=[inquiry.pk]), {"answer": "設定をご確認ください。"})
    run_queued_tasks()
    [answer] = smtp_sink.to("yamada@docomo.ne.jp")
    sender = answer["From"].addresses[0]
    assert sender.addr_spec == "madoguchi@mail.desk-city.example.jp"
    assert (
        _display_name(smtp_sink.raw_to("yamada@docomo.ne.jp")[0])
        == "児童見守りシステム サポート窓口（岩見沢市）"
    )
    body = _body(answer)
    # The desk's name once, not wrapped in itself: 「…サポート窓口（…サポート窓口（岩見沢市））」.
    assert body.count("サポート窓口") == 1
    assert "児童見守りシステム サポート窓口（岩見沢市）\n" in body
    assert f"受付番号 {inquiry.reference}" in body


def test_a_desk_address_on_another_domain_replies_there_but_mails_from_the_mail_domain(
    smtp_sink: Sink,
) -> None:
    city = make_municipality("other-domain-city", support_name="", name="滝川市")
    assert not city.support_email.endswith("@" + city.mail_domain)
    Client().post(reverse("portal:inquiry"), _form(city))
    run_queued_tasks()
    [acknowledgement] = smtp_sink.to("hanako.mama@docomo.ne.jp")
    sender = acknowledgement["From"].addresses[0]
    assert sender.addr_spec == f"support@{city.mail_domain}"
    assert (
        _display_name(smtp_sink.raw_to("hanako.mama@docomo.ne.jp")[0])
        == "児童見守りシステム サポート窓口（滝川市）"
    )
    assert acknowledgement["Reply-To"] == city.support_email


def test_an_inquiry_is_acknowledged_with_its_reference_number(smtp_sink: Sink) -> None:
    city = make_municipality("ack-city")
    client = Client()
    response = client.post(reverse("portal:inquiry"), _form(city, body="秘密の文面です。"))
    assert response.status_code == 302
    inquiry = Inquiry.objects.get()
    assert inquiry.reference == f"Q{inquiry.pk:06d}"
    thanks = _text(client.get(reverse("portal:inquiry_thanks")))
    assert f'<strong id="inquiry-reference">{inquiry.reference}</strong>' in thanks
    assert "受付番号" in thanks

    run_queued_tasks()
    run_queued_tasks()  # a task run again sends nothing more
    [acknowledgement] = smtp_sink.to("hanako.mama@docomo.ne.jp")
    subject = str(acknowledgement["Subject"])
    assert "お問い合わせを受け付けました" in subject
    assert inquiry.reference in subject
    body = _body(acknowledgement)
    assert f"受付番号: {inquiry.reference}" in body
    # Nothing the sender typed travels to the address they gave.
    for typed in ("秘密の文面です。", "メールが届きません", "佐藤 花子"):
        assert typed not in body + subject
    [copy] = smtp_sink.to(city.support_email)
    assert inquiry.reference in str(copy["Subject"])
    assert inquiry.reference in _body(copy)

    staff = make_staff(Role.MUNICIPALITY, municipality=city)
    console = Client()
    console.force_login(staff)
    assert inquiry.reference in _text(console.get(reverse("console:inquiries")))
    page = _text(console.get(reverse("console:inquiry", args=[inquiry.pk])))
    assert f'<dd id="inquiry-reference">{inquiry.reference}</dd>' in page

"""One-click unsubscribe (RFC 8058): the headers broadcast mails carry, and what the link does.

The mails come from the real delivery path through a real SMTP sink; the POST is what a mail
provider sends (no session, no CSRF token, body ``List-Unsubscribe=One-Click``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from mimamori.accounts.models import Role
from mimamori.audit.models import AuditEvent
from mimamori.registry.models import Registrant
from tests.cast import make_registrant, make_school, make_staff
from tests.mailsink import Sink
from tests.test_address_health import broadcast_to

pytestmark = pytest.mark.django_db


def link_of(message: Any) -> str:
    value = str(message["List-Unsubscribe"])
    assert value.startswith("<http")
    assert value.endswith(">")
    return value[1:-1].removeprefix("http://127.0.0.1:8000").removeprefix("http://testserver")


def test_a_broadcast_mail_offers_one_click_unsubscribe_for_the_children_it_names(smtp_sink: Sink) -> None:
    school = make_school()
    older = make_registrant(school, ["family@docomo.ne.jp"], child_name="見守 太郎")
    younger = make_registrant(school, ["family@docomo.ne.jp"], child_name="見守 花子")
    other = make_registrant(school, ["other@au.com"])
    broadcast_to(school)

    (mail,) = smtp_sink.to("family@docomo.ne.jp")
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail["List-Id"] == f"<school-{school.pk}.{school.municipality.mail_domain}>"
    link = link_of(mail)
    assert "family" not in link
    assert link != link_of(smtp_sink.to("other@au.com")[0])

    client = Client(enforce_csrf_checks=True)
    page = client.get(link)
    assert page.status_code == 200
    assert "配信停止" in page.content.decode()
    assert "見守 太郎" not in page.content.decode()  # the page names no child
    assert "見守 花子" not in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    assert Registrant.objects.filter(receive_broadcasts=False).count() == 0  # a GET changes nothing

    assert client.post(link, {"List-Unsubscribe": "One-Click"}).status_code == 200
    older.refresh_from_db()
    younger.refresh_from_db()
    other.refresh_from_db()
    assert (older.receive_broadcasts, younger.receive_broadcasts, other.receive_broadcasts) == (
        False,
        False,
        True,
    )
    events = AuditEvent.objects.filter(action="registrant.option_changed")
    assert events.count() == 2
    assert {e.details["via"] for e in events} == {"one-click unsubscribe"}

    assert client.post(link, {"List-Unsubscribe": "One-Click"}).status_code == 200  # twice: nothing more
    assert AuditEvent.objects.filter(action="registrant.option_changed").count() == 2

    broadcast_to(school)
    assert len(smtp_sink.to("family@docomo.ne.jp")) == 1
    assert len(smtp_sink.to("other@au.com")) == 2


def test_a_wrong_link_or_body_changes_nothing(smtp_sink: Sink) -> None:
    school = make_school()
    make_registrant(school, ["family@docomo.ne.jp"])
    broadcast_to(school)
    link = link_of(smtp_sink.to("family@docomo.ne.jp")[0])
    client = Client()
    assert client.post(link, {"List-Unsubscribe": "yes"}).status_code == 400
    assert client.post(link[:-3] + "aa/", {"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.get("/u/not-a-token/").status_code == 404
    assert not Registrant.objects.filter(receive_broadcasts=False).exists()


def test_the_municipality_can_switch_it_off_and_maintenance_notices_never_carry_it(smtp_sink: Sink) -> None:
    from mimamori.broadcasts import sending
    from mimamori.broadcasts.models import Broadcast, BroadcastKind
    from tests.tasks import run_until_quiet

    school = make_school()
    make_registrant(school, ["family@docomo.ne.jp"])
    school.municipality.one_click_unsubscribe = False
    school.municipality.save()
    broadcast_to(school)
    (mail,) = smtp_sink.to("family@docomo.ne.jp")
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Id"] is not None

    # A maintenance notice, as maintenance/notices.py makes it, goes to every address and
    # offers no way out of it.
    school.municipality.one_click_unsubscribe = True
    school.municipality.save()
    notice = Broadcast.objects.create(
        created_by=make_staff(Role.SCHOOL, school=school),
        kind=BroadcastKind.MAINTENANCE,
        subject="メンテナンスのお知らせ",
        body="…",
    )
    notice.municipalities.set([school.municipality])
    assert sending.send(notice)
    run_until_quiet()
    (_, maintenance) = smtp_sink.to("family@docomo.ne.jp")
    assert maintenance["List-Unsubscribe"] is None

"""SmtpSession against a real SMTP server, with and without PIPELINING (RFC 2920)."""

from __future__ import annotations

import pytest

from mimamori.mail.smtp import Outcome, SmtpSession
from tests.mailsink import Sink

MESSAGE = b"Subject: test\r\nTo: a@docomo.ne.jp\r\n\r\nfirst line\r\n.\r\n..two dots\r\nlast line"


@pytest.fixture(params=[True, False], ids=["pipelined", "lock-step"])
def sink(request: pytest.FixtureRequest, smtp_sink: Sink) -> Sink:
    smtp_sink.pipelining = request.param
    return smtp_sink


def test_the_message_arrives_intact_over_one_reused_connection(sink: Sink) -> None:
    with SmtpSession() as session:
        replies = [session.send("school@city.jp", f"{n}@docomo.ne.jp", MESSAGE) for n in range(3)]
        assert session.connection is not None
        assert session.connection.has_extn("pipelining") is sink.pipelining
    assert [r.outcome for r in replies] == [Outcome.ACCEPTED] * 3
    body = sink.to("1@docomo.ne.jp")[0].get_content()
    assert body.splitlines() == ["first line", ".", "..two dots", "last line"]


def test_refused_recipients_get_the_servers_words_and_the_session_goes_on(sink: Sink) -> None:
    sink.refusals = {"busy@au.com": ["451 4.3.0 Try again later"], "gone@au.com": ["550 5.1.1 User unknown"]}
    with SmtpSession() as session:
        busy = session.send("school@city.jp", "busy@au.com", MESSAGE)
        gone = session.send("school@city.jp", "gone@au.com", MESSAGE)
        fine = session.send("school@city.jp", "fine@au.com", MESSAGE)
        again = session.send("school@city.jp", "busy@au.com", MESSAGE)
    assert (busy.outcome, busy.text) == (Outcome.TEMPORARY, "451 4.3.0 Try again later")
    assert (gone.outcome, gone.text) == (Outcome.PERMANENT, "550 5.1.1 User unknown")
    assert fine.outcome is again.outcome is Outcome.ACCEPTED
    assert sink.copies() == {"fine@au.com": 1, "busy@au.com": 1}


def test_a_closing_server_is_temporary_and_the_next_mail_reconnects(sink: Sink) -> None:
    sink.refusals = {"closing@au.com": ["421 4.7.0 Too many connections"]}
    with SmtpSession() as session:
        closing = session.send("school@city.jp", "closing@au.com", MESSAGE)
        assert session.connection is None
        fine = session.send("school@city.jp", "fine@au.com", MESSAGE)
    assert (closing.outcome, closing.text) == (Outcome.TEMPORARY, "421 4.7.0 Too many connections")
    assert fine.outcome is Outcome.ACCEPTED
    assert sink.copies() == {"fine@au.com": 1}


def test_an_address_that_is_not_ascii_fails_for_good(sink: Sink) -> None:
    with SmtpSession() as session:
        reply = session.send("school@city.jp", "ｆｕｌｌ@au.com", MESSAGE)
        fine = session.send("school@city.jp", "fine@au.com", MESSAGE)
    assert reply.outcome is Outcome.PERMANENT
    assert fine.outcome is Outcome.ACCEPTED


def test_an_address_with_a_line_break_fails_for_good_and_sends_no_command(sink: Sink) -> None:
    with SmtpSession() as session:
        reply = session.send("school@city.jp", "a@au.com>\r\nRCPT TO:<b@au.com", MESSAGE)
        fine = session.send("school@city.jp", "fine@au.com", MESSAGE)
    assert (reply.outcome, reply.text) == (Outcome.PERMANENT, "line break in address")
    assert fine.outcome is Outcome.ACCEPTED
    assert sink.copies() == {"fine@au.com": 1}

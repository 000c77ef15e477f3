"""A real SMTP sink for tests (aiosmtpd on loopback), counting copies per recipient."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from mimamori.mail.devmailbox import Pipelining


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink(Pipelining):
    """Offers PIPELINING like production relays; set ``pipelining = False`` for lock-step."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[str, EmailMessage]] = []
        self.raw: list[tuple[str, bytes]] = []  # the bytes as they came, for what parsing hides
        # Replies to give a recipient on its next RCPT attempts before accepting, e.g.
        # {"a@x.jp": ["451 4.3.0 try later"]}; "550 …" entries repeat forever.
        self.refusals: dict[str, list[str]] = {}
        self.attempts: Counter[str] = Counter()
        self.envelope_senders: dict[str, list[str]] = {}  # recipient → MAIL FROM of each copy
        # A destination in trouble, by recipient domain: a reply to give every RCPT (e.g.
        # "451 4.7.1 try later"), or seconds to take before answering it.
        self.domain_replies: dict[str, str] = {}
        self.domain_delays: dict[str, float] = {}
        self.sessions: dict[int, list[str]] = {}  # connection → recipients offered on it, in order

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        delay = self.domain_delays.get(domain)
        if delay:
            await asyncio.sleep(delay)
        with self.lock:
            self.attempts[address] += 1
            self.sessions.setdefault(id(session), []).append(address)
            if domain in self.domain_replies:
                return self.domain_replies[domain]
            planned = self.refusals.get(address)
            if planned:
                reply = planned[0]
                if not reply.startswith("5"):
                    planned.pop(0)
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content or b"")
        assert isinstance(message, EmailMessage)
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.messages.append((recipient, message))
                self.raw.append((recipient, envelope.original_content or b""))
                self.envelope_senders.setdefault(recipient, []).append(str(envelope.mail_from))
        return "250 OK"

    def to(self, recipient: str) -> list[EmailMessage]:
        with self.lock:
            return [m for r, m in self.messages if r == recipient]

    def raw_to(self, recipient: str) -> list[bytes]:
        with self.lock:
            return [m for r, m in self.raw if r == recipient]

    def copies(self) -> Counter[str]:
        with self.lock:
            return Counter(r for r, _ in self.messages)


@pytest.fixture
def smtp_sink(settings: object) -> Iterator[Sink]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    # pytest-django swaps in the locmem backend; these tests use real SMTP.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # type: ignore[attr-defined]
    settings.EMAIL_HOST = "127.0.0.1"  # type: ignore[attr-defined]
    settings.EMAIL_PORT = port  # type: ignore[attr-defined]
    try:
        yield sink
    finally:
        controller.stop()

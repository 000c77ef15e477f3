"""A real DNS server for tests (UDP on loopback), answering TXT questions from a table.

The console's DNS check (mail/records.py) asks it through dnspython's resolver, as it asks any
server named in MIMAMORI_DNS_SERVERS; nothing of ours is replaced.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest


class DnsServer:
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}  # name → TXT values, each as DNS would carry it
        self.silent: set[str] = set()  # names it never answers (a DNS that does not answer)
        self.failing: set[str] = set()  # names it answers with SERVFAIL
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.address: tuple[str, int] = self.socket.getsockname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def publish(self, name: str, *values: str) -> None:
        """TXT records at ``name``; a value longer than 255 characters goes as several strings,
        as a zone file must write it."""
        self.records[name.lower()] = [
            " ".join(f'"{value[i : i + 255]}"' for i in range(0, len(value), 255)) or '""' for value in values
        ]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.socket.recvfrom(4096)
            except TimeoutError:
                continue
            reply = self._answer(data)
            if reply is not None:
                self.socket.sendto(reply, client)

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        if name in self.failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT and self.records[name]:
            rdatas = [
                dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text) for text in self.records[name]
            ]
            response.answer.append(dns.rrset.from_rdata_list(question.name, 300, rdatas))
        wire: bytes = response.to_wire()
        return wire


@pytest.fixture
def dns_server(settings: object) -> Iterator[DnsServer]:
    """A DNS server the console's checks ask (MIMAMORI_DNS_SERVERS)."""
    server = DnsServer()
    settings.MIMAMORI_DNS_SERVERS = [server.address]  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()

"""Issue 13 acceptance, over real HTTP: a stranger's wrong passwords do not lock the owner out.

The site runs on a live server on 127.0.0.1; the attacker's requests leave from 127.0.0.2 and
the owner's from 127.0.0.3 (the whole of 127.0.0.0/8 is loopback on Linux), each socket bound
to its source address, so the server sees two real client addresses. Default settings: five
failures lock a (login ID, address) pair, fifty failures from one address throttle it.
"""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from mimamori.accounts.models import ClientEvent
from mimamori.audit.models import AuditEvent
from tests.cast import PASSWORD, make_registrant

pytestmark = pytest.mark.django_db(transaction=True)

THROTTLED = "この接続元からのログインの失敗が多すぎる"
LOCKED = "ログインが一時停止されています"


@dataclass
class Browser:
    """A minimal HTTP client whose connections leave from one loopback address."""

    host: str
    port: int
    source: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], str]:
        connection = http.client.HTTPConnection(
            self.host, self.port, timeout=30, source_address=(self.source, 0)
        )
        headers = {"Host": f"{self.host}:{self.port}"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        payload = None
        if form is not None:
            payload = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
            for value in response.headers.get_all("Set-Cookie") or []:
                for name, morsel in SimpleCookie(value).items():
                    self.cookies[name] = morsel.value
            return response.status, dict(response.headers), text
        finally:
            connection.close()

    def log_in(self, login_id: str, password: str) -> tuple[int, dict[str, str], str]:
        _status, _headers, page = self.request("GET", "/portal/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token, page[:500]
        form = {"csrfmiddlewaretoken": token.group(1), "username": login_id, "password": password}
        return self.request("POST", "/portal/login/", form)


def _server(live_server: Any) -> tuple[str, int]:
    url = urlsplit(live_server.url)
    assert url.port is not None
    # "localhost" is served on the IPv4 loopback: the bound source addresses need IPv4.
    return "127.0.0.1", url.port


def test_fifty_wrong_passwords_from_one_address_do_not_stop_the_owner_and_throttle_the_attacker(
    live_server: Any,
) -> None:
    victim = make_registrant()
    bystander = make_registrant()
    host, port = _server(live_server)
    attacker = Browser(host, port, "127.0.0.2")
    owner = Browser(host, port, "127.0.0.3")

    statuses = [attacker.log_in(victim.login_id, f"wrong-password-{n}")[0] for n in range(50)]
    assert statuses[:4] == [200] * 4  # wrong password, try again
    assert set(statuses[4:]) == {429}  # the pair (victim, 127.0.0.2) is locked from the fifth

    # The owner, from another address, logs in with the right password.
    status, headers, _page = owner.log_in(victim.login_id, PASSWORD)
    assert status == 302
    assert headers["Location"] == "/portal/"
    assert owner.request("GET", "/portal/")[0] == 200

    # The attacker's address is throttled: the right password, or another login ID, is refused.
    for login_id in (victim.login_id, bystander.login_id):
        status, _headers, page = attacker.log_in(login_id, PASSWORD)
        assert status == 429
        assert THROTTLED in page
    assert owner.log_in(bystander.login_id, PASSWORD)[0] == 302

    # The server saw the two real addresses: the throttle counted and the audit log names them.
    assert set(ClientEvent.objects.values_list("address", flat=True)) == {"127.0.0.2"}
    failed = set(AuditEvent.objects.filter(action="login.failed").values_list("ip_address", flat=True))
    assert failed == {"127.0.0.2"}
    succeeded = set(AuditEvent.objects.filter(action="login.succeeded").values_list("ip_address", flat=True))
    assert succeeded == {"127.0.0.3"}


def test_a_locked_pair_shows_the_lockout_page_not_the_throttle(live_server: Any) -> None:
    victim = make_registrant()
    host, port = _server(live_server)
    attacker = Browser(host, port, "127.0.0.2")
    for n in range(5):
        attacker.log_in(victim.login_id, f"wrong-password-{n}")
    status, _headers, page = attacker.log_in(victim.login_id, PASSWORD)
    assert status == 429
    assert LOCKED in page
    assert THROTTLED not in page

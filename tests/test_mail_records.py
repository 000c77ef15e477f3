"""The SPF, DKIM and DMARC records each municipality's mail domain must publish (issue 12): the
console page that lists them for the centre and the municipality's staff, and its check
against DNS, asked of a real DNS server on loopback (tests/dnsserver.py) that publishes, omits,
fails or stays silent as told.
"""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from mimamori import env
from mimamori.accounts.models import Role
from mimamori.mail import records
from mimamori.mail.models import DkimKey
from mimamori.mail.records import Kind, Status
from mimamori.registry.models import Municipality
from tests.cast import make_municipality, make_school, make_staff
from tests.dnsserver import DnsServer

pytestmark = pytest.mark.django_db


def keygen(municipality: Municipality) -> str:
    out = io.StringIO()
    call_command("dkim_keygen", "--municipality", municipality.code, stdout=out)
    return out.getvalue().splitlines()[-1]


def publish_all(server: DnsServer, municipality: Municipality, spf: str = "v=spf1 mx -all") -> None:
    """What the page asks for, as an operator would paste it."""
    domain = municipality.mail_domain
    server.publish(domain, spf, "google-site-verification=abc")
    for key in DkimKey.objects.filter(domain=domain):
        server.publish(key.record_name, key.record_value)
    server.publish(f"_dmarc.{domain}", "v=DMARC1; p=none")


def statuses(municipality: Municipality, server: DnsServer, lifetime: float = 2.0) -> dict[str, Status]:
    checks = records.check(
        records.for_domain(municipality.mail_domain), nameservers=[server.address], lifetime=lifetime
    )
    return {
        check.record.kind if check.record.kind != Kind.DKIM else check.record.name: check.status
        for check in checks
    }


def text(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def test_published_records_match_and_each_difference_is_named(dns_server: DnsServer, settings: Any) -> None:
    city = make_municipality("dns-city")
    keygen(city)
    key = DkimKey.objects.get()
    publish_all(dns_server, city)
    assert statuses(city, dns_server) == {
        "SPF": Status.MATCH,
        key.record_name: Status.MATCH,  # served as two strings (longer than 255), joined again
        "DMARC": Status.MATCH,
    }

    # More senders than ours, a stricter policy: still what we ask for.
    dns_server.publish(city.mail_domain, "v=spf1 mx ip4:192.0.2.25 include:_spf.example.net ~all")
    dns_server.publish(f"_dmarc.{city.mail_domain}", "v=DMARC1; p=quarantine; rua=mailto:d@example.jp")
    assert set(statuses(city, dns_server).values()) == {Status.MATCH}

    # What receivers would not accept, or that leaves our relay out.
    settings.MIMAMORI_SPF = "ip4:203.0.113.25"
    dns_server.publish(city.mail_domain, "v=spf1 mx -all")
    assert statuses(city, dns_server)["SPF"] == Status.MISMATCH
    dns_server.publish(city.mail_domain, "v=spf1 ip4:203.0.113.25 -all", "v=spf1 mx -all")
    assert statuses(city, dns_server)["SPF"] == Status.MISMATCH  # two SPF records: a permanent error
    dns_server.publish(city.mail_domain, "v=spf1 ip4:203.0.113.25 +all")
    assert statuses(city, dns_server)["SPF"] == Status.MISMATCH
    dns_server.publish(key.record_name, "v=DKIM1; k=rsa; p=" + key.public_key[:-8] + "AAAAAAA=")
    assert statuses(city, dns_server)[key.record_name] == Status.MISMATCH
    settings.MIMAMORI_DMARC_RUA = "dmarc@centre.example.jp"
    assert statuses(city, dns_server)["DMARC"] == Status.MISMATCH  # reports go elsewhere
    dns_server.publish(
        f"_dmarc.{city.mail_domain}", "v=DMARC1; p=none; rua=mailto:dmarc@centre.example.jp!10m"
    )
    assert statuses(city, dns_server)["DMARC"] == Status.MATCH

    # Nothing there: not published (DNS answered).
    dns_server.records.clear()
    assert set(statuses(city, dns_server).values()) == {Status.MISMATCH}


def test_a_dns_that_does_not_answer_leaves_records_unchecked_quickly(dns_server: DnsServer) -> None:
    city = make_municipality("quiet-city")
    keygen(city)
    key = DkimKey.objects.get()
    publish_all(dns_server, city)
    dns_server.silent.add(city.mail_domain)
    dns_server.failing.add(key.record_name)
    started = time.monotonic()
    found = statuses(city, dns_server, lifetime=0.5)
    assert time.monotonic() - started < 1.5  # the look-ups run side by side, each within its lifetime
    assert found == {"SPF": Status.UNKNOWN, key.record_name: Status.UNKNOWN, "DMARC": Status.MATCH}
    # No DNS at all (nothing listens there): every record unchecked.
    unanswered = records.check(
        records.for_domain(city.mail_domain), nameservers=[("127.0.0.1", 9)], lifetime=0.3
    )
    assert {check.status for check in unanswered} == {Status.UNKNOWN}


def test_the_page_shows_each_record_and_its_state_to_the_citys_staff_only(
    dns_server: DnsServer, settings: Any
) -> None:
    city, other = make_municipality("page-city"), make_municipality("other-city")
    school = make_school(city)
    keygen(city)
    key = DkimKey.objects.get()
    publish_all(dns_server, city)
    dns_server.publish(f"_dmarc.{city.mail_domain}", "v=DMARC1; p=reject; rua=mailto:x@example.jp")
    dns_server.failing.add(f"_dmarc.{city.mail_domain}")
    url = reverse("console:municipality_dns", args=[city.code])

    staff = Client()
    staff.force_login(make_staff(Role.MUNICIPALITY, municipality=city))
    page = text(staff.get(url))
    assert "送信ドメインの DNS レコード" in page
    assert f"{city.mail_domain}" in page
    assert "v=spf1 mx -all" in page
    assert key.record_name in page
    assert f"p={key.public_key}" in page
    assert "v=DMARC1; p=none" in page
    assert page.count('<strong class="ok">一致</strong>') == 2  # SPF and DKIM
    assert "<strong>未確認</strong>" in page  # DMARC: the server failed
    # The private key, nowhere on the page.
    assert "PRIVATE" not in page
    for line in key.private_key.splitlines()[1:-1]:
        assert line not in page
    # The list of municipalities links to it.
    assert url in staff.get(reverse("console:municipalities")).content.decode()

    centre = Client()
    centre.force_login(make_staff(Role.CENTRE))
    assert centre.get(url).status_code == 200
    # Another city's staff, and school staff even of this city: as if it did not exist.
    outsider = Client()
    outsider.force_login(make_staff(Role.MUNICIPALITY, municipality=other))
    assert outsider.get(url).status_code == 404
    teacher = Client()
    teacher.force_login(make_staff(Role.SCHOOL, school=school))
    assert teacher.get(url).status_code == 404
    assert url not in teacher.get(reverse("console:municipalities")).content.decode()


def test_a_domain_without_a_key_is_told_how_to_get_one(dns_server: DnsServer) -> None:
    city = make_municipality("keyless")
    client = Client()
    client.force_login(make_staff(Role.CENTRE))
    page = text(client.get(reverse("console:municipality_dns", args=[city.code])))
    assert "mimamori dkim-keygen --municipality keyless" in page
    assert "_domainkey" not in page
    assert page.count('<strong class="error">不一致</strong>') == 2  # SPF, DMARC: not published


def test_dns_servers_are_read_as_addresses_with_optional_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "MIMAMORI_DNS_SERVERS", " 192.0.2.53, 192.0.2.54:5353,2001:db8::53 , [2001:db8::54]:53 "
    )
    assert env.ip_ports("MIMAMORI_DNS_SERVERS", 53) == [
        ("192.0.2.53", 53),
        ("192.0.2.54", 5353),
        ("2001:db8::53", 53),
        ("2001:db8::54", 53),
    ]
    for wrong in ("dns.example.jp", "192.0.2.53:0", "192.0.2.300", "[2001:db8::54]:99999"):
        monkeypatch.setenv("MIMAMORI_DNS_SERVERS", wrong)
        with pytest.raises(ImproperlyConfigured, match="MIMAMORI_DNS_SERVERS"):
            env.ip_ports("MIMAMORI_DNS_SERVERS", 53)
    monkeypatch.delenv("MIMAMORI_DNS_SERVERS")
    assert env.ip_ports("MIMAMORI_DNS_SERVERS", 53) == []

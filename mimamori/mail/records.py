"""The DNS records a mail domain must publish for its mail to be trusted, and whether it does.

- **SPF** on the domain itself: the relay may send for it (``v=spf1 <MIMAMORI_SPF> -all``).
  The envelope sender is at this domain (mail/verp.py), so receivers check SPF against it.
- **DKIM** at ``<selector>._domainkey.<domain>``, one per key (mail/signing.py).
- **DMARC** at ``_dmarc.<domain>``: what receivers do with mail that fails both, and where
  they send reports. ``p=none`` is recommended while the domain warms up, ``quarantine`` after.

check() asks DNS for what is published, all names at once and briefly, and compares: 一致
(MATCH), 不一致 (MISMATCH, with the reason) or 未確認 (UNKNOWN: DNS did not answer, e.g. a
machine without outside DNS). A name DNS says does not exist counts as not published.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import dns.exception
import dns.nameserver
import dns.resolver
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from mimamori.mail.models import DkimKey

# A replaced key's record should stay published this long, for mail it signed that is still on
# its way (relays retry for up to five days); the console lists it for a while longer.
RETIRED_PUBLISHED_DAYS = 7
KEEP_RETIRED_DAYS = 30
# How long one look-up may take, all of a page's run side by side: a page waits at most this.
LIFETIME = 2.0


class Kind(enum.StrEnum):
    SPF = "SPF"
    DKIM = "DKIM"
    DMARC = "DMARC"


class Status(enum.StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Record:
    """A TXT record the domain should publish: ``name TXT "value"``."""

    kind: Kind
    name: str
    value: str
    key: DkimKey | None = None  # the DKIM key it publishes

    @property
    def removable_after(self) -> datetime | None:
        """When a replaced key's record may be deleted from DNS (None: it is still needed)."""
        if self.key is None or self.key.retired_at is None:
            return None
        return self.key.retired_at + timedelta(days=RETIRED_PUBLISHED_DAYS)

    @property
    def zone_value(self) -> str:
        """The value as a zone file writes it: quoted strings of at most 255 characters each
        (a 2048-bit key is longer; DNS joins the strings again)."""
        return " ".join(f'"{self.value[i : i + 255]}"' for i in range(0, len(self.value), 255))


@dataclass(frozen=True)
class Check:
    record: Record
    status: Status
    reason: str | Promise = ""
    published: list[str] = field(default_factory=list)  # the TXT values of its kind found there


def spf_value(mechanisms: str) -> str:
    return f"v=spf1 {' '.join(mechanisms.split())} -all"


def dmarc_value(report_address: str) -> str:
    value = "v=DMARC1; p=none"
    if report_address:
        value += f"; rua={_mailto(report_address)}"
    return value


def _mailto(address: str) -> str:
    return address if address.lower().startswith("mailto:") else f"mailto:{address}"


def for_domain(domain: str) -> list[Record]:
    """The records ``domain`` should publish, with this installation's settings: its signing
    key's and those of keys replaced in the last KEEP_RETIRED_DAYS."""
    since = timezone.now() - timedelta(days=KEEP_RETIRED_DAYS)
    keys = DkimKey.objects.filter(domain=domain.lower()).filter(
        Q(retired_at__isnull=True) | Q(retired_at__gte=since)
    )
    return expected(
        domain.lower(), keys, spf=settings.MIMAMORI_SPF, dmarc_report_address=settings.MIMAMORI_DMARC_RUA
    )


def expected(domain: str, keys: Iterable[DkimKey], *, spf: str, dmarc_report_address: str) -> list[Record]:
    """SPF, then one DKIM record per key given, then DMARC."""
    return [
        Record(Kind.SPF, domain, spf_value(spf)),
        *(Record(Kind.DKIM, key.record_name, key.record_value, key) for key in keys),
        Record(Kind.DMARC, f"_dmarc.{domain}", dmarc_value(dmarc_report_address)),
    ]


def lookup(
    names: Sequence[str], *, nameservers: Sequence[tuple[str, int]] = (), lifetime: float = LIFETIME
) -> dict[str, list[str] | None]:
    """The TXT values at each name (a record's strings joined, as RFC 7208 and 6376 read them):
    [] where there is none, None where DNS did not answer in time. ``nameservers``: (address,
    port) pairs to ask (MIMAMORI_DNS_SERVERS); none: the machine's own (/etc/resolv.conf)."""
    servers = [dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers]

    def one(name: str) -> list[str] | None:
        try:
            resolver = dns.resolver.Resolver(configure=not servers)
            if servers:
                resolver.nameservers = list(servers)
            answer = resolver.resolve(name, "TXT", lifetime=lifetime, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException:  # timed out, SERVFAIL, no resolver configured …
            return None
        return [b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in answer]

    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=len(unique)) as pool:
        return dict(zip(unique, pool.map(one, unique), strict=True))


def check(
    records: Sequence[Record], *, nameservers: Sequence[tuple[str, int]] = (), lifetime: float = LIFETIME
) -> list[Check]:
    answers = lookup([r.name for r in records], nameservers=nameservers, lifetime=lifetime)
    return [compare(record, answers[record.name]) for record in records]


def compare(record: Record, answer: list[str] | None) -> Check:
    """What is published at the record's name (``answer``, as lookup() gives it) against it."""
    if answer is None:
        return Check(record, Status.UNKNOWN, _("DNS did not answer."))
    if record.kind is Kind.SPF:
        return _spf(record, answer)
    if record.kind is Kind.DKIM:
        return _dkim(record, answer)
    return _dmarc(record, answer)


def _tags(value: str) -> dict[str, str]:
    """A tag list (RFC 6376 3.2, RFC 7489 6.3): tag=value pairs between semicolons."""
    tags = {}
    for part in value.split(";"):
        name, equals, content = part.partition("=")
        if equals:
            tags[name.strip().lower()] = content.strip()
    return tags


def _spf(record: Record, answer: list[str]) -> Check:
    published = [value for value in answer if re.match(r"v=spf1(\s|$)", value, re.IGNORECASE)]
    if not published:
        return Check(record, Status.MISMATCH, _("Not published."))
    if len(published) > 1:
        return Check(
            record,
            Status.MISMATCH,
            _("More than one SPF record: receivers treat that as an error."),
            published,
        )
    terms = {term.lower() for term in published[0].split()[1:]}
    wanted = [term for term in record.value.split()[1:] if term != "-all"]
    if any(term.lower() not in terms for term in wanted):
        return Check(
            record,
            Status.MISMATCH,
            _("It does not name every sender the record on the left names."),
            published,
        )
    if terms & {"+all", "all", "?all"}:
        return Check(
            record, Status.MISMATCH, _("It lets anyone send for the domain (+all or ?all)."), published
        )
    return Check(record, Status.MATCH, "", published)


def _dkim(record: Record, answer: list[str]) -> Check:
    if not answer:
        return Check(record, Status.MISMATCH, _("Not published."), answer)
    assert record.key is not None
    wanted = record.key.public_key
    for value in answer:
        tags = _tags(value)
        if tags.get("v", "DKIM1") != "DKIM1" or tags.get("k", "rsa").lower() != "rsa":
            continue
        if re.sub(r"\s", "", tags.get("p", "")) == wanted:
            return Check(record, Status.MATCH, "", answer)
    return Check(record, Status.MISMATCH, _("Another key, or no key, is published under this name."), answer)


def _dmarc(record: Record, answer: list[str]) -> Check:
    published = [value for value in answer if re.match(r"v\s*=\s*DMARC1\s*(;|$)", value)]
    if not published:
        return Check(record, Status.MISMATCH, _("Not published."))
    if len(published) > 1:
        return Check(
            record, Status.MISMATCH, _("More than one DMARC record: receivers ignore them all."), published
        )
    tags, wanted = _tags(published[0]), _tags(record.value)
    if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
        return Check(record, Status.MISMATCH, _("It has no valid policy (p=)."), published)
    if "rua" in wanted:
        # Each address may end in a size limit: mailto:dmarc@example.jp!10m
        addresses = {address.strip().partition("!")[0].lower() for address in tags.get("rua", "").split(",")}
        if wanted["rua"].lower() not in addresses:
            return Check(
                record,
                Status.MISMATCH,
                _("Its reports (rua=) do not go to the address on the left."),
                published,
            )
    return Check(record, Status.MATCH, "", published)

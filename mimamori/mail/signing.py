"""DKIM signatures (RFC 6376) on every mail, made with its mail domain's key.

Keys are made by ``mimamori dkim-keygen`` (generate() here) and kept in the database
(models.DkimKey), one signing key per mail domain. A mail is signed with the key of its From
domain, the municipality's mail domain, so the signature's ``d=`` is the domain DMARC looks at.
Mail of a domain without a key goes out as it is.

dkimpy does the DKIM work: it parses the message, canonicalizes headers and body (relaxed),
picks the header fields by name, hashes them with the signature header, and folds that header.
Only the RSA step is done elsewhere. dkimpy computes it in pure Python and parses the PEM key
again on every call, 6–7 ms a mail; OpenSSL through ``cryptography`` takes 0.3 ms, and the
whole signature 0.5–0.7 ms (docs/performance.md). dkimpy offers no hook for that step:
``DKIM.sign`` parses the key itself and ``DomainSigner.gen_header`` calls its own
``RSASSA_PKCS1_v1_5_sign``. So Signer._header() is those two methods written out once more for
the one case we use (rsa-sha256, relaxed/relaxed), each step a dkimpy function but the
signature, which is RSASSA-PKCS1-v1_5 over the same SHA-256 digest: the same bytes.

And proved so, as the broadcast fast path is (broadcasts/mails.py): a signer, when its key is
loaded, signs a sample mail both ways; if its header is not byte for byte the one
``dkim.sign`` makes (a dkimpy release that changed its insides), it signs through
``dkim.sign`` itself, slow but right, and says so in the log.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import time
from datetime import datetime
from email.utils import parseaddr

import dkim
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from django.db import transaction
from django.utils import timezone
from dkim.canonicalization import CanonicalizationPolicy

from mimamori.mail.models import DkimKey

log = logging.getLogger(__name__)

KEY_BITS = 2048
# A new key of a domain is picked up by every process within this time; a domain without a key
# costs one query per process this often, and nothing per mail.
REFRESH_SECONDS = 60.0

# Signed when present, each once more than it appears ("over-signed"), so that nobody on the
# way can add a second From, Subject or List-Unsubscribe without breaking the signature.
# RFC 8058 asks that List-Unsubscribe and List-Unsubscribe-Post be signed.
SIGNED_HEADERS = frozenset(
    (
        b"from",
        b"reply-to",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
        b"list-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"auto-submitted",
    )
)
_SIGNATURE = b"DKIM-Signature"
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_SELECTOR = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")

# What a signer signs both ways when its key is loaded: every kind of header line our mails
# have (an encoded and folded one among them) and a base64 body ending in empty lines, which
# relaxed body canonicalization drops.
_SAMPLE = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"MIME-Version: 1.0\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"Subject: =?utf-8?b?44CQ6KaL5a6I44KK44CR5LiN5a+p6ICF5oOF5aCx?=\r\n"
    b" =?utf-8?b?44Gu44GK55+l44KJ44Gb?=\r\n"
    b"From: =?utf-8?b?56ys5LiA5bCP5a2m5qCh?= <school@mail.example.jp>\r\n"
    b"To: mama@docomo.ne.jp\r\n"
    b"Reply-To: support@mail.example.jp\r\n"
    b"Date: Tue, 01 Dec 2026 09:00:00 +0900\r\n"
    b"Message-ID: <sample.1@mail.example.jp>\r\n"
    b"Auto-Submitted: auto-generated\r\n"
    b"List-Id: <school-1.mail.example.jp>\r\n"
    b"List-Unsubscribe: <https://mimamori.example.jp/u/abcdefghijklmnopqrstuvwxyz/>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"X-Unsigned:  two  spaces \t\r\n"
    b"\r\n"
    b"44GT44KM44Gv6Kmm6aiT44Gn44GZ44CCCg==\r\n"
    b"\r\n"
    b"\r\n"
)


class SigningError(Exception):
    """A mail cannot be signed: its domain's key cannot be used."""


class Signer:
    """Signs mail for one domain with one key (thread-safe: a chunk's SMTP threads share it).

    A key that cannot be loaded makes a signer that refuses every mail (SigningError), so each
    mail fails as a mail that cannot be built does, with the reason, instead of going out
    unsigned or holding up the others.
    """

    def __init__(self, domain: str, selector: str, private_key: str, *, key_id: int = 0) -> None:
        self.domain, self.selector, self.key_id = domain, selector, key_id
        self._d, self._s = domain.encode("ascii"), selector.encode("ascii")
        self._pem = private_key.encode("ascii", errors="replace")
        self._key: rsa.RSAPrivateKey | None = None
        self.problem, self.fast = "", False
        try:
            key = serialization.load_pem_private_key(self._pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            self.problem = f"the DKIM key {self} cannot be used: {error}"
        else:
            if isinstance(key, rsa.RSAPrivateKey):
                self._key = key
            else:
                self.problem = f"the DKIM key {self} is not an RSA key"
        if self._key is None:
            log.error("%s", self.problem)
            return
        self.fast = self._proved()
        if not self.fast:
            log.warning("DKIM %s: dkimpy signs differently from our copy; signing with dkimpy (slow)", self)

    def __repr__(self) -> str:
        return f"<Signer {self}>"

    def __str__(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def sign(self, message: bytes, *, now: int | None = None) -> bytes:
        """``message`` (CRLF line ends) with its DKIM-Signature header in front."""
        if self._key is None:
            raise SigningError(self.problem)
        moment = int(time.time()) if now is None else now
        if self.fast:
            return self._header(message, moment) + message
        return self._dkimpy(message) + message

    def _header(self, message: bytes, now: int) -> bytes:
        """The DKIM-Signature header line: dkimpy's DKIM.sign and DomainSigner.gen_header for
        rsa-sha256 and relaxed/relaxed, with the RSA step done by OpenSSL."""
        headers, body = dkim.rfc822_parse(message)
        include = _included(headers)
        body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest())
        fields = [
            (b"v", b"1"),
            (b"a", b"rsa-sha256"),
            (b"c", _RELAXED.to_c_value()),
            (b"d", self._d),
            (b"i", b"@" + self._d),
            (b"q", b"dns/txt"),
            (b"s", self._s),
            (b"t", str(now).encode("ascii")),
            (b"h", b" : ".join(include)),
            (b"bh", body_hash),
            (b"b", b"0" * 60),  # as dkimpy: b= folds onto its own line, so filling it in moves nothing
        ]
        value = dkim.fold(b"; ".join(b"=".join(field) for field in fields), namelen=len(_SIGNATURE))
        value = dkim.RE_BTAG.sub(b"\\1", value)
        digest = hashlib.sha256()
        canonical = _RELAXED.canonicalize_headers(headers)
        dkim.hash_headers(digest, _RELAXED, canonical, include, (_SIGNATURE, b" " + value), dict(fields))
        assert self._key is not None
        signature = self._key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        fields[-1] = (b"b", base64.b64encode(signature))
        value = b"; ".join(b"=".join(field) for field in fields) + b"\r\n"
        return _SIGNATURE + b": " + dkim.fold(value, namelen=len(_SIGNATURE), linesep=b"\r\n")

    def _dkimpy(self, message: bytes) -> bytes:
        headers, _body = dkim.rfc822_parse(message)
        signed: bytes = dkim.sign(
            message,
            self._s,
            self._d,
            self._pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(_included(headers)),
        )
        return signed

    def _proved(self) -> bool:
        """Our header for the sample is the one dkim.sign makes, within the same second."""
        for _attempt in range(3):
            before = int(time.time())
            expected = self._dkimpy(_SAMPLE)
            if int(time.time()) == before:
                try:
                    return self._header(_SAMPLE, before) == expected
                except Exception:  # a dkimpy whose functions changed shape
                    log.exception("DKIM %s: signing without dkimpy's RSA failed", self)
                    return False
        return False


def _included(headers: list[list[bytes]]) -> tuple[bytes, ...]:
    """The h= tag's names: the signed fields present, in order, then each once more."""
    present = tuple(name.lower() for name, _value in headers if name.lower() in SIGNED_HEADERS)
    return present + present


_signers: dict[str, tuple[float, Signer | None]] = {}


def signer_for(domain: str) -> Signer | None:
    """The signer of ``domain``'s mail, or None if it has no key; read from the database at most
    every REFRESH_SECONDS per process (call it where the database may be used: a chunk's SMTP
    threads get theirs from the thread that claimed the chunk)."""
    domain = domain.lower()
    moment = time.monotonic()
    cached = _signers.get(domain)
    if cached is not None and moment - cached[0] < REFRESH_SECONDS:
        return cached[1]
    row = (
        DkimKey.objects.filter(domain=domain, retired_at__isnull=True)
        .values_list("pk", "selector", "private_key")
        .first()
    )
    signer = cached[1] if cached is not None else None
    if row is None:
        signer = None
    elif signer is None or signer.key_id != row[0]:
        signer = Signer(domain, row[1], row[2], key_id=row[0])
    _signers[domain] = (moment, signer)
    return signer


def forget(domain: str | None = None) -> None:
    """Read ``domain``'s key (every domain's, without one) afresh at its next mail."""
    if domain is None:
        _signers.clear()
    else:
        _signers.pop(domain.lower(), None)


_FROM = re.compile(rb"^From:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE | re.IGNORECASE)


def from_domain(message: bytes) -> str:
    """The domain of the message's From address ("" if it has none)."""
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    found = _FROM.search(head)
    if found is None:
        return ""
    value = re.sub(rb"\r?\n", b"", found.group(1)).decode("ascii", errors="replace")
    return parseaddr(value)[1].rpartition("@")[2].lower()


def sign(message: bytes) -> bytes:
    """``message`` signed with its From domain's key, or as it is if that domain has none."""
    domain = from_domain(message)
    signer = signer_for(domain) if domain else None
    return signer.sign(message) if signer is not None else message


def default_selector(domain: str, today: datetime | None = None) -> str:
    """mimamori<yyyymm>, with -2, -3 … after it when the domain already has that selector."""
    base = f"mimamori{timezone.localtime(today or timezone.now()):%Y%m}"
    taken = set(DkimKey.objects.filter(domain=domain.lower()).values_list("selector", flat=True))
    selector, n = base, 1
    while selector in taken:
        n += 1
        selector = f"{base}-{n}"
    return selector


def generate(domain: str, selector: str | None = None) -> tuple[DkimKey, DkimKey | None]:
    """A new 2048-bit key for ``domain``, which signs its mail from now on; returns it and the
    key it replaced (retired: its private half dropped, its public half kept). ValueError for a
    selector that is malformed or already used by the domain."""
    domain = domain.lower()
    if selector is not None and (_SELECTOR.fullmatch(selector) is None or len(selector) > 63):
        raise ValueError(
            f"{selector!r} is not a selector: lower-case letters, digits and hyphens, dot-separated."
        )
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public = base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode("ascii")
    with transaction.atomic():
        # Rows of the domain locked, so two commands at once cannot both leave a signing key.
        current = list(DkimKey.objects.select_for_update().filter(domain=domain, retired_at__isnull=True))
        selector = selector or default_selector(domain)
        if DkimKey.objects.filter(domain=domain, selector=selector).exists():
            raise ValueError(f"{domain} already has a key with the selector {selector!r}; choose another.")
        DkimKey.objects.filter(pk__in=[old.pk for old in current]).update(
            retired_at=timezone.now(), private_key=""
        )
        created = DkimKey.objects.create(
            domain=domain, selector=selector, private_key=private, public_key=public
        )
        # This process signs with it from its next mail (others within REFRESH_SECONDS).
        forget(domain)
        transaction.on_commit(lambda: forget(domain))
    previous = DkimKey.objects.filter(pk=current[0].pk).first() if current else None
    return created, previous

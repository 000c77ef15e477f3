"""Envelope senders that say which mail bounced (VERP), without saying anything to anyone else.

Every mail goes out with its own MAIL FROM, ``b-<token>@<domain>``: the token is the mail's
kind and number, encrypted as one AES block under a key derived from SECRET_KEY, so it holds no
address and no row ID in clear, and a token nobody made decrypts to garbage (the seven zero
bytes that fill the block do not come back). A bounce arrives addressed to it; read() gives
back (kind, number). Keys follow SECRET_KEY: bounces of mails sent under an earlier key are not
recognised (they are logged and dropped).

seal() and unseal() do the same for other opaque links to one mail, each purpose under a key of
its own (the one-click unsubscribe link: broadcasts/mails.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from django.conf import settings

PREFIX = "b-"
DELIVERY, MAIL = "d", "m"  # a broadcast's delivery; any other mail
KINDS = frozenset((DELIVERY, MAIL))
_FILL = bytes(7)
_TOKEN = re.compile(r"[a-z2-7]{26}", re.IGNORECASE)


@functools.cache
def _cipher(secret: str, purpose: str) -> Cipher[modes.ECB]:
    key = hashlib.sha256(f"mimamori {purpose}\0{secret}".encode()).digest()[:16]
    # ECB on a single block is AES itself: a pseudo-random permutation of the 16 bytes.
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


_local = threading.local()


def _contexts(secret: str, purpose: str) -> tuple[CipherContext, CipherContext]:
    """This thread's encryptor and decryptor for ``purpose``. ECB keeps no state between
    blocks, so one context serves every block; making one per mail cost as much as building
    the mail (a tenth of a worker's CPU)."""
    contexts: dict[tuple[str, str], tuple[CipherContext, CipherContext]] = _local.__dict__.setdefault(
        "contexts", {}
    )
    if (secret, purpose) not in contexts:
        cipher = _cipher(secret, purpose)
        contexts[(secret, purpose)] = (cipher.encryptor(), cipher.decryptor())
    return contexts[(secret, purpose)]


def seal(kind: str, number: int, *, purpose: str = "envelope sender") -> str:
    """(kind, number) as 26 opaque characters (base32 of one AES block). Each ``purpose`` has
    a key of its own, so an envelope sender does not open an unsubscribe link."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    block = kind.encode() + number.to_bytes(8, "big") + _FILL
    sealed = _contexts(settings.SECRET_KEY, purpose)[0].update(block)
    return base64.b32encode(sealed).decode().rstrip("=").lower()


def unseal(token: str, *, purpose: str = "envelope sender") -> tuple[str, int] | None:
    """(kind, number) a token was sealed from, or None for one we did not make."""
    if _TOKEN.fullmatch(token) is None:
        return None
    sealed = base64.b32decode(token.upper() + "======")
    if base64.b32encode(sealed).decode().rstrip("=") != token.upper():
        return None  # the last character's unused bits set: not a token we wrote
    block = _contexts(settings.SECRET_KEY, purpose)[1].update(sealed)
    kind, number, fill = block[:1].decode("latin-1"), block[1:9], block[9:]
    if fill != _FILL or kind not in KINDS:
        return None
    return kind, int.from_bytes(number, "big")


def envelope_sender(kind: str, number: int, domain: str) -> str:
    return f"{PREFIX}{seal(kind, number)}@{settings.MIMAMORI_BOUNCE_DOMAIN or domain}"


def read(address: str) -> tuple[str, int] | None:
    """(kind, number) of the mail an envelope sender was made for, or None."""
    local_part = address.strip().strip("<>").rpartition("@")[0]
    if not local_part.lower().startswith(PREFIX):
        return None
    return unseal(local_part[len(PREFIX) :])

"""Small typed readers for the environment variables of docs/interface (shared/spec/interface.md).

Settings call these once at import time, so a missing or malformed value fails when the
process starts, never at the first request.

Any variable NAME may instead be given as NAME_FILE, the path of a file holding the value (the
Docker secrets and systemd credentials convention), so that secrets need not sit in the
environment; setting both is refused.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    """NAME from the environment, else the contents of the file NAME_FILE names, else None."""
    value = os.environ.get(name)
    file_name = os.environ.get(f"{name}_FILE")
    if file_name is None or file_name.strip() == "":
        return value
    if value is not None:
        raise ImproperlyConfigured(f"Set {name} or {name}_FILE, not both.")
    try:
        # A trailing newline is what editors and `echo` leave; it is never part of a secret.
        return Path(file_name.strip()).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_name!r} ({exc}).") from exc


def string(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


def required(name: str) -> str:
    value = string(name)
    if value is None:
        raise ImproperlyConfigured(f"The environment variable {name} must be set.")
    return value


def boolean(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {value!r}.")


def integer(name: str, default: int) -> int:
    value = string(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from exc


def redacted(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: fit for a log line or an error."""
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


def path(name: str, default: str) -> Path:
    return Path(string(name, default) or default).expanduser().resolve()


def ip_ports(name: str, default_port: int) -> list[tuple[str, int]]:
    """Comma-separated IP addresses, each with an optional port: ``192.0.2.1``, ``192.0.2.1:5353``,
    ``2001:db8::1`` or ``[2001:db8::1]:5353``."""
    found: list[tuple[str, int]] = []
    for item in (string(name) or "").split(","):
        text = item.strip()
        if not text:
            continue
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
        if bracketed:
            address, port = bracketed.group(1), bracketed.group(2)
        elif text.count(":") == 1:
            address, port = text.split(":")
        else:
            address, port = text, None
        try:
            ipaddress.ip_address(address)
            number = int(port) if port is not None else default_port
        except ValueError:
            number = 0
        if not 0 < number < 65536:
            raise ImproperlyConfigured(f"{name}: {text!r} is not an IP address with an optional :port.")
        found.append((address, number))
    return found

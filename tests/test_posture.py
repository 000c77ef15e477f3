"""Production posture (issue 13): the secret key, secrets from files, HTTPS, CSP, no-store, API docs."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from mimamori import env
from mimamori.accounts.models import ApiToken, Role
from tests.cast import make_registrant, make_school, make_staff
from tests.test_access import World, _kwargs, _patterns, world  # noqa: F401  (world is a fixture)

MIMAMORI = str(Path(sys.executable).with_name("mimamori"))
PRODUCTION_DATABASE = "postgres://mimamori@db.invalid:5432/mimamori"


def _environment(tmp_path: Path, **values: str) -> dict[str, str]:
    """A clean environment for a mimamori process: nothing of this test run's settings."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("PATH", "HOME", "LANG", "LC_", "VIRTUAL_ENV", "PYTHON")) and not k.endswith("_FILE")
    }
    return {**kept, "MIMAMORI_DATA_DIR": str(tmp_path / "data"), **values}


def _settings(tmp_path: Path, expression: str, **values: str) -> subprocess.CompletedProcess[str]:
    """Import mimamori.settings in a fresh process with ``values`` and print ``expression``."""
    code = f"from mimamori import settings as s; print({expression})"
    return subprocess.run(
        [sys.executable, "-c", code],
        env=_environment(tmp_path, **values),
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the secret key ------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"DATABASE_URL": PRODUCTION_DATABASE},
        {"BASE_URL": "https://mimamori.example.jp"},
        {"DATABASE_URL": PRODUCTION_DATABASE, "BASE_URL": "https://mimamori.example.jp"},
    ],
    ids=["postgresql", "https", "both"],
)
def test_without_secret_key_anything_but_one_embedded_machine_refuses_to_start(
    tmp_path: Path, values: dict[str, str]
) -> None:
    done = _settings(tmp_path, "s.SECRET_KEY", **values)
    assert done.returncode != 0
    assert "ImproperlyConfigured: Set SECRET_KEY (or SECRET_KEY_FILE)" in done.stderr
    assert not (tmp_path / "data" / "secret_key").exists()


def test_one_embedded_machine_keeps_its_generated_key(tmp_path: Path) -> None:
    first = _settings(tmp_path, "s.SECRET_KEY")
    second = _settings(tmp_path, "s.SECRET_KEY")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    assert (tmp_path / "data" / "secret_key").read_text().strip() == first.stdout.strip()


def test_debug_on_postgresql_may_still_generate_a_key(tmp_path: Path) -> None:
    done = _settings(tmp_path, "len(s.SECRET_KEY)", DATABASE_URL=PRODUCTION_DATABASE, DEBUG="1")
    assert done.returncode == 0, done.stderr


# --- secrets from files ------------------------------------------------------------


def test_each_secret_can_come_from_a_file(tmp_path: Path) -> None:
    files = {
        "SECRET_KEY": "k" * 60,
        "DATABASE_URL": "postgres://mimamori:pa%40ss@db.example:5432/mimamori",
        "EMAIL_URL": "smtp+tls://relay:relay-secret@relay.example:587",
        "BROKER_URL": "amqp://mimamori:broker-secret@rabbit.example:5672/mimamori",
    }
    values = {}
    for name, value in files.items():
        path = tmp_path / name.lower()
        path.write_text(value + "\n")  # as `echo` or an editor leaves it
        values[f"{name}_FILE"] = str(path)
    shown = "s.SECRET_KEY, s.DATABASES['default']['PASSWORD'], s.EMAIL_HOST_PASSWORD, s.BROKER_URL, sep='|'"
    done = _settings(tmp_path, shown, **values)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "|".join(
        ["k" * 60, "pa@ss", "relay-secret", "amqp://mimamori:broker-secret@rabbit.example:5672/mimamori"]
    )


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("x" * 60)
    done = _settings(tmp_path, "s.SECRET_KEY", SECRET_KEY="y" * 60, SECRET_KEY_FILE=str(path))
    assert done.returncode != 0
    assert "Set SECRET_KEY or SECRET_KEY_FILE, not both." in done.stderr


def test_a_missing_secret_file_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.delenv("MIMAMORI_TEST_SECRET", raising=False)
    monkeypatch.setenv("MIMAMORI_TEST_SECRET_FILE", str(tmp_path / "absent"))
    with pytest.raises(ImproperlyConfigured, match="MIMAMORI_TEST_SECRET_FILE: cannot read"):
        env.string("MIMAMORI_TEST_SECRET")


# --- HTTPS: HSTS, redirect, a TLS-terminating proxy -------------------------------------

_HTTPS_PROBE = """
import django, json
django.setup()
from django.test import Client
client = Client()
plain = client.get("/no-such-page/")
health = client.get("/healthz")
proxied = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "health": health.status_code,
    "proxied_hsts": proxied.get("Strict-Transport-Security"),
}))
"""


def _https_probe(tmp_path: Path, **values: str) -> dict[str, Any]:
    import json

    done = subprocess.run(
        [sys.executable, "-c", _HTTPS_PROBE],
        env=_environment(tmp_path, DJANGO_SETTINGS_MODULE="mimamori.settings", **values),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_behind_a_tls_proxy_https_is_enforced_with_hsts(tmp_path: Path) -> None:
    seen = _https_probe(
        tmp_path,
        BASE_URL="https://mimamori.example.jp",
        ALLOWED_HOSTS="testserver",
        SECRET_KEY="s" * 60,
        MIMAMORI_TLS_PROXY="1",
    )
    assert seen["plain"] == [301, "https://testserver/no-such-page/"]
    assert seen["health"] == 200  # the proxy's health check over plain http is not redirected
    assert seen["proxied_hsts"] == "max-age=31536000; includeSubDomains"


def test_hsts_can_be_turned_off_and_a_plain_http_site_has_none(tmp_path: Path) -> None:
    off = _https_probe(
        tmp_path,
        BASE_URL="https://mimamori.example.jp",
        ALLOWED_HOSTS="testserver",
        SECRET_KEY="s" * 60,
        MIMAMORI_TLS_PROXY="1",
        MIMAMORI_HSTS_SECONDS="0",
    )
    assert off["proxied_hsts"] is None
    plain = _https_probe(tmp_path, ALLOWED_HOSTS="testserver")
    assert plain["plain"][0] == 404
    assert plain["proxied_hsts"] is None  # without MIMAMORI_TLS_PROXY the header is not believed


def test_the_deploy_check_is_clean_with_the_documented_production_settings(tmp_path: Path) -> None:
    production = {
        "DATABASE_URL": PRODUCTION_DATABASE,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "BASE_URL": "https://mimamori.example.jp",
        "ALLOWED_HOSTS": "mimamori.example.jp",
        "EMAIL_URL": "smtp://127.0.0.1:25",
        "MIMAMORI_TLS_PROXY": "1",
    }
    done = subprocess.run(
        [MIMAMORI, "check", "--deploy", "--fail-level=DEBUG"],
        env=_environment(tmp_path, **production),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().startswith("System check identified no issues"), done.stdout


# --- CSP and no-store on every page -------------------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style|\sstyle=", re.I)
EVENT_HANDLER = re.compile(r"<[^>]*\son[a-z]+=", re.I)


def _assert_policy(response: Any, where: str) -> None:
    policy = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'", where
    assert directives["script-src"] == "'self'", where
    assert directives["style-src"].startswith("'self'"), where
    assert "unsafe" not in policy, where
    assert "no-store" in response["Cache-Control"], where
    assert "private" in response["Cache-Control"] or response["Cache-Control"] == "no-store", where


def _assert_no_inline_code(response: Any, where: str) -> None:
    if not response.get("Content-Type", "").startswith("text/html") or response.status_code != 200:
        return
    page = response.content.decode()
    for rule in (INLINE_SCRIPT, INLINE_STYLE, EVENT_HANDLER):
        assert not rule.search(page), f"{where}: {rule.search(page)}"


def test_no_template_has_inline_script_or_style() -> None:
    root = Path(__file__).parent.parent / "mimamori"
    found = []
    for template in root.glob("*/templates/**/*.html"):
        if template.name == "letters.html":
            continue  # written to disk as well; its own CSS is allowed by hash (below)
        text = template.read_text()
        found += [
            f"{template}: {m[0]}"
            for rule in (INLINE_SCRIPT, INLINE_STYLE, EVENT_HANDLER)
            for m in [rule.search(text)]
            if m
        ]
    assert not found


@pytest.mark.django_db
@pytest.mark.parametrize("namespace", ["console", "portal"])
def test_every_page_has_the_policy_and_no_store(world: World, namespace: str) -> None:  # noqa: F811
    client = Client()
    if namespace == "console":
        client.force_login(make_staff(Role.CENTRE))
    else:
        assert world.registrant_a.account is not None
        client.force_login(world.registrant_a.account)
    checked = 0
    for pattern in _patterns(namespace):
        url = reverse(f"{namespace}:{pattern.name}", kwargs=_kwargs(pattern, world))
        response = client.get(url)
        where = f"GET {url}: {response.status_code}"
        _assert_policy(response, where)
        _assert_no_inline_code(response, where)
        checked += response.status_code == 200
    assert checked >= 5
    # Anonymous pages too (the login page, a redirect to it).
    for url in (reverse(f"{namespace}:login"), reverse(f"{namespace}:home")):
        _assert_policy(Client().get(url), url)


def test_csv_exports_and_the_api_are_not_stored(db: None) -> None:
    school = make_school()
    make_registrant(school, ["one@docomo.ne.jp"])
    staff = make_staff(Role.SCHOOL, school=school)
    client = Client()
    client.force_login(staff)
    export = client.get(reverse("console:undeliverable_csv", kwargs={"school_id": school.pk}))
    assert export.status_code == 200
    assert export["Content-Type"].startswith("text/csv")
    _assert_policy(export, "undeliverable.csv")
    _token, raw = ApiToken.issue(staff)
    answer = Client().get("/api/v1/schools", headers={"Authorization": f"Bearer {raw}"})
    assert answer.status_code == 200
    _assert_policy(answer, "/api/v1/schools")


def test_static_files_keep_their_caching(db: None) -> None:
    response = Client().get("/static/mimamori/site.css")
    response.close()  # WhiteNoise streams the file
    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
    assert "max-age" in response["Cache-Control"]


def test_the_letters_page_allows_only_its_own_inline_css(db: None) -> None:
    school = make_school()
    registrant = make_registrant(school, ["one@docomo.ne.jp"], password=None)
    client = Client()
    client.force_login(make_staff(Role.SCHOOL, school=school))
    response = client.post(
        reverse("console:letters", kwargs={"school_id": school.pk}), {"registrant": [registrant.pk]}
    )
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    style = next(d for d in policy.split(";") if d.strip().startswith("style-src")).split()
    assert style[1:2] == ["'self'"]
    assert len(style) == 3
    assert style[2].startswith("'sha256-")
    assert "unsafe" not in policy


# --- the API document -------------------------------------------------------------------


def test_api_docs_are_for_staff_and_served_from_this_server(db: None) -> None:
    docs, document = "/api/v1/docs", "/api/v1/openapi.json"
    anonymous = Client()
    assert anonymous.get(docs).status_code == 302
    assert anonymous.get(docs)["Location"].startswith(reverse("console:login"))
    refused = anonymous.get(document)
    assert refused.status_code == 401
    assert set(refused.json()) == {"detail"}
    guardian = Client()
    account = make_registrant(make_school(), ["g@docomo.ne.jp"]).account
    assert account is not None
    guardian.force_login(account)
    assert guardian.get(document).status_code == 401
    assert anonymous.get(document, headers={"Authorization": "Bearer mmr_wrong"}).status_code == 401

    staff = make_staff(Role.CENTRE)
    _token, raw = ApiToken.issue(staff)
    assert anonymous.get(document, headers={"Authorization": f"Bearer {raw}"}).status_code == 200
    console = Client()
    console.force_login(staff)
    page = console.get(docs)
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    _assert_policy(page, docs)
    assert console.get(document).json()["paths"]
    # Last: closing a streamed answer ends the request, which closes a test's connection.
    bundle = console.get("/static/ninja/swagger-ui-bundle.js")
    bundle.close()
    assert bundle.status_code == 200

"""Shared test set-up: the database checks and a small named cast (see tests/cast.py)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from bench.pgserver import postmaster_start

# When the server of DATABASE_URL (the machine's PostgreSQL service) started, as the run began.
SERVER_STARTED = pytest.StashKey[str]()


def pytest_sessionstart(session: pytest.Session) -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg

    try:
        started = postmaster_start(url)
    except psycopg.OperationalError as error:
        pytest.exit(
            f"PostgreSQL is not reachable at {url}: {error}\n"
            "Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            returncode=3,
        )
    if not hasattr(session.config, "workerinput"):  # the run's own process, not a pytest-xdist worker
        session.config.stash[SERVER_STARTED] = started


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run if the server of DATABASE_URL restarted while it ran.

    That server is shared (other checkouts' tests, a demo): no test may stop or restart it. Tests
    that do (tests/test_outage.py, the postgres-restart drill of tests/test_drills.py) use a
    server of their own (bench/pgserver.py). Checked last, after the test database is dropped.
    """
    if SERVER_STARTED not in session.config.stash:
        return
    import psycopg

    url = os.environ["DATABASE_URL"]
    before = session.config.stash[SERVER_STARTED]
    try:
        after = postmaster_start(url)
    except psycopg.OperationalError as error:
        after = f"not reachable ({error})".strip()
    if after == before:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"The PostgreSQL server at {url} restarted during this run: it started at {before}, "
            f"now {after}. Something stopped or restarted the shared server (a test of this run, or "
            "something else on this machine); tests that stop PostgreSQL use bench/pgserver.py.",
            red=True,
            bold=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """A throwaway PostgreSQL database per run, so two runs on one machine never collide."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = f"test_mimamori_{os.getpid()}"


pytest_plugins = ["tests.mailsink", "tests.browser", "tests.dnsserver"]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n … --dist loadfile` (make test) keeps pytest-django's order in each process
    (tests/scheduling.py)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from tests.scheduling import LoadFileInDatabaseOrder

    return LoadFileInDatabaseOrder(config, log)


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    """Each test starts with an empty cache: a rolled-back test's ids come round again (and
    its DKIM keys, which each process keeps for a minute, are gone)."""
    from django.core.cache import cache

    from mimamori.mail import signing

    cache.clear()
    signing.forget()


@pytest.fixture(autouse=True)
def fresh_carrier_profiles() -> None:
    """Each test reads the carrier groups anew: one that changed a group's character set does
    not leave it to the next in this process's copy (mail/carriers.py cached())."""
    from mimamori.mail import carriers

    carriers.forget()


@pytest.fixture(autouse=True)
def quick_retries(settings: Any) -> None:
    """A deferred mail is due again at once, so run_until_quiet() plays out a retry schedule."""
    settings.MIMAMORI_RETRY_BASE_SECONDS = 0


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any, request: pytest.FixtureRequest) -> None:
    """Argon2 costs ~0.5 s a hash; tests about flows use a fast hasher.

    tests/test_settings.py checks that production really hashes with Argon2.
    """
    if "real_hashing" not in request.keywords:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

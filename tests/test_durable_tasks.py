"""A background task outlives the database going away in embedded mode (tasking/durable.py): its
function is run again once the database answers, instead of the task being marked failed and its
rows left to the sweep's quarter-hour net.

The fault is real: the task's own PostgreSQL connection is terminated by the server
(pg_terminate_backend) half-way through the task, as a restart or a failover does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection
from django.test import override_settings

from mimamori.registry.models import Municipality
from mimamori.tasking import durable, task

pytestmark = pytest.mark.django_db(transaction=True)

calls: list[str] = []


@pytest.fixture(autouse=True)
def _fresh_connection_after() -> Iterator[None]:
    # A test where the error goes up leaves the cut connection behind; the flush needs a live one.
    yield
    connection.close()


def _terminate_own_connection() -> None:
    """Ask the server, from a second connection, to end this one (as a restart would)."""
    import psycopg

    pid = connection.connection.info.backend_pid
    settings_dict = connection.settings_dict
    with psycopg.connect(
        host=settings_dict["HOST"] or "127.0.0.1",
        port=settings_dict["PORT"] or 5432,
        user=settings_dict["USER"],
        dbname=settings_dict["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


@task()
def count_municipalities(name: str) -> int:
    calls.append(name)
    if len(calls) == 1:
        connection.ensure_connection()
        _terminate_own_connection()
    return Municipality.objects.filter(name=name).count()


def test_a_task_whose_database_connection_is_cut_runs_again_and_finishes() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("cutting a connection from the server's side needs PostgreSQL")
    calls.clear()
    with override_settings(BROKER_URL=None):
        assert count_municipalities.call("岩見沢市") == 0
    assert calls == ["岩見沢市", "岩見沢市"]


def test_past_its_patience_the_error_goes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("cutting a connection from the server's side needs PostgreSQL")
    calls.clear()
    monkeypatch.setattr(durable, "PATIENCE_SECONDS", 0)
    with override_settings(BROKER_URL=None), pytest.raises(DatabaseError):
        count_municipalities.call("岩見沢市")
    assert calls == ["岩見沢市"]


def test_in_distributed_mode_the_celery_runner_retries_instead() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("cutting a connection from the server's side needs PostgreSQL")
    calls.clear()
    with override_settings(BROKER_URL="redis://127.0.0.1:6379/15"), pytest.raises(DatabaseError):
        count_municipalities.call("岩見沢市")
    assert calls == ["岩見沢市"]

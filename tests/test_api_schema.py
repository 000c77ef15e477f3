"""schemathesis against the REST API (issue 13): the OpenAPI document tells the truth.

Every operation is called by each role (centre, municipality, school) with requests generated
from the document, valid ones and invalid ones, and every response is checked by all of
schemathesis' checks: no server error, only documented statuses, content types and headers,
bodies that match their schema, invalid data refused, valid data accepted, and so on.

In-process: the schema is the API's own document (read through the app with a staff token,
as an integration would), and the calls go to Django's WSGI application in this thread, so
they share the test's database connection and transaction. That is why this runs on SQLite
too (the in-memory test database is only reachable from this connection) as well as on
PostgreSQL, the engine where NUL bytes and out-of-range integers broke before.

Bounded and reproducible: a fixed seed, derandomized generation, a few examples per operation.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, settings
from requests.structures import CaseInsensitiveDict

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.api.endpoints import api
from mimamori.broadcasts import sending, targeting
from mimamori.gates.models import GateReader, reader_token_digest
from mimamori.maintenance.models import MaintenanceWindow
from mimamori.registry.models import Municipality, School
from tests.cast import make_municipality, make_registrant, make_school, make_staff

# Operations whose valid-by-schema requests can still be refused with 422 for a reason the
# document cannot state in JSON Schema; schemathesis' positive_data_acceptance check accepts
# 422 there (and nowhere else), and the reason is in each operation's description:
# - POST /registrants, PATCH /registrants/{id}: whether an address can be delivered to
#   (email_validator's grammar, special-use domains) and one address twice for one child;
# - POST /broadcasts: a scope outside the token's own, reminders without a read confirmation,
#   a read confirmation where a municipality offers no confirmation links, answer choices that
#   are one or repeat one;
# - POST /maintenance-windows: times in the past, ends before starts, longer than 7 days;
# - POST /broadcasts/{id}/send: a time `at` that has passed or is more than a year ahead.
DOMAIN_REFUSALS = {
    ("POST", "/api/v1/broadcasts/{broadcast_id}/send"),
    ("POST", "/api/v1/registrants"),
    ("PATCH", "/api/v1/registrants/{registrant_id}"),
    ("POST", "/api/v1/broadcasts"),
    ("POST", "/api/v1/maintenance-windows"),
    ("POST", "/api/v1/gate-events"),  # a date the calendar has not (30 February) in an event's `at`
}

EXAMPLES = 25

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 13,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {"enabled": True},
        "operations": [
            {
                "include-method": method,
                "include-path": path,
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                    }
                },
            }
            for method, path in sorted(DOMAIN_REFUSALS)
        ],
    }
)


class World:
    """Data the operations reach: a city with schools, registrants and a sent broadcast."""

    def __init__(self) -> None:
        self.city: Municipality = make_municipality("minato")
        self.school: School = make_school(self.city, name="港小学校", local="minato-es")
        self.other_school = make_school(self.city, name="港中学校", local="minato-jhs")
        for n in range(3):
            make_registrant(self.school, [f"guardian{n}@docomo.ne.jp", None])
        make_registrant(self.other_school, ["parent@ezweb.ne.jp"])
        self.staff: dict[str, User] = {
            "centre": make_staff(Role.CENTRE),
            "municipality": make_staff(Role.MUNICIPALITY, municipality=self.city),
            "school": make_staff(Role.SCHOOL, school=self.school),
        }
        self.tokens = {role: ApiToken.issue(user)[1] for role, user in self.staff.items()}
        scope = targeting.resolve_scope(self.staff["school"])
        self.draft = sending.compose(self.staff["school"], subject="件名", body="本文", scope=scope)
        sent = sending.compose(
            self.staff["school"], subject="送信済み", body="本文", scope=scope, request_confirmation=True
        )
        sending.send(sent, by=self.staff["school"])
        start = timezone.now() + timedelta(days=3)
        MaintenanceWindow.objects.create(
            starts_at=start,
            ends_at=start + timedelta(hours=1),
            message="メンテナンス",
            created_by=self.staff["centre"],
        )


@pytest.fixture
def world(db: None) -> World:
    return World()


def _load() -> Any:
    # The API object's own document, as /api/v1/openapi.json serves it (to staff only, perhaps).
    loaded = schemathesis.openapi.from_dict(api.get_openapi_schema(path_prefix="/api/v1/"), config=CONFIG)
    loaded.app = WSGIHandler()
    return loaded


schema = _load()
TALLY: Counter[tuple[str, str, int]] = Counter()
# schemathesis applies auth when it generates a case, some of them while collecting: so the
# token is one fixed string, and each test gives it to the staff member of the role it tests.
TOKEN = "mmr_schemathesis-" + "x" * 27
# POST /gate-events takes a gate reader's token (of the world's school), never a staff one.
READER_TOKEN = "mgr_schemathesis-" + "x" * 27
READER_PATHS = {"/api/v1/gate-events", "/gate-events"}


@schema.auth(refresh_interval=None)
class StaffBearer:
    """The bearer token of the role under test, as schemathesis' auth (so its checks know
    which header carries the credentials, and ignored_auth can try without them)."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return READER_TOKEN if case.operation.path in READER_PATHS else TOKEN

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        headers = CaseInsensitiveDict(case.headers or {})
        headers["Authorization"] = f"Bearer {data}"
        case.headers = headers


@pytest.fixture
def token(world: World, role: str) -> str:
    ApiToken.objects.create(
        user=world.staff[role], digest=hashlib.sha256(TOKEN.encode()).hexdigest(), prefix=TOKEN[:8]
    )
    GateReader.objects.create(
        school=world.school, name="正門", token_digest=reader_token_digest(READER_TOKEN)
    )
    return TOKEN


@pytest.mark.parametrize("role", ["centre", "municipality", "school"])
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_the_api_answers_as_its_document_says(case: schemathesis.Case, token: str, role: str) -> None:
    response = case.call_and_validate()
    if case.meta is not None and case.meta.generation.mode.is_positive:
        # The role's own token, always: valid requests reach the code, not the door.
        assert response.status_code != 401, response.text
    TALLY[role, case.operation.label, response.status_code] += 1


@pytest.fixture(scope="module", autouse=True)
def _tally() -> Iterator[None]:
    """How many calls each role made and what they got (shown with pytest -s)."""
    yield
    for role in ("centre", "municipality", "school"):
        calls = {key: n for key, n in TALLY.items() if key[0] == role}
        statuses = Counter[int]()
        for (_role, _label, status), n in calls.items():
            statuses[status] += n
        operations = len({label for _role, label, _status in calls})
        total = sum(calls.values())
        print(
            f"\nschemathesis {role}: {total} calls, {operations} operations, {dict(sorted(statuses.items()))}"
        )


def test_the_document_is_the_one_the_app_serves(world: World) -> None:
    response = Client().get(
        "/api/v1/openapi.json", headers={"Authorization": f"Bearer {world.tokens['centre']}"}
    )
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(api.get_openapi_schema(path_prefix="/api/v1/")))


@pytest.fixture(autouse=True)
def _one_connection() -> Iterator[None]:
    # Django closes the database connection after each request; the calls here run inside the
    # test's transaction, so (as django.test.Client does) keep it open while they are made.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # Thousands of 4xx responses are each logged by django.request as a warning.
    caplog.set_level("ERROR", logger="django.request")

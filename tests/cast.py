"""A small named cast and tiny make_* helpers, rather than a pile of global fixtures."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from mimamori.accounts.models import Role, User
from mimamori.registry.models import Municipality, Registrant, School
from mimamori.registry.registrants import enrol

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery"


def make_municipality(code: str = "", **fields: object) -> Municipality:
    n = next(_counter)
    code = code or f"city{n}"
    defaults: dict[str, object] = {
        "name": f"テスト市{n}",
        "mail_domain": f"mail.{code}.example.jp",
        "support_name": "サポート窓口",
        "support_phone": "0120-000-000",
        "support_email": f"support@{code}.example.jp",
        "support_hours": "平日 9:00〜17:00",
    }
    defaults.update(fields)
    return Municipality.objects.create(code=code, **defaults)


def make_school(municipality: Municipality | None = None, name: str = "", local: str = "") -> School:
    n = next(_counter)
    return School.objects.create(
        municipality=municipality or make_municipality(),
        name=name or f"第{n}小学校",
        sender_local_part=local or f"school{n}",
    )


def make_registrant(
    school: School | None = None,
    addresses: Sequence[str | None] = (),
    *,
    password: str | None = PASSWORD,
    grade: int = 3,
    class_name: str = "1",
    child_name: str = "",
    receive_broadcasts: bool = True,
) -> Registrant:
    """A registrant whose guardian has finished the first login (unless password is None)."""
    n = next(_counter)
    enrolment = enrol(
        school or make_school(),
        child_name=child_name or f"見守 太郎{n}",
        child_name_kana=f"みまもり たろう{n}",
        grade=grade,
        class_name=class_name,
        addresses=addresses,
        receive_broadcasts=receive_broadcasts,
    )
    registrant = enrolment.registrant
    if password is not None:
        registrant.account.set_password(password)
        registrant.account.save()
        registrant.registration_code_digest = ""
        registrant.save()
    return registrant


def make_staff(
    role: Role | str,
    *,
    municipality: Municipality | None = None,
    school: School | None = None,
    username: str = "",
    password: str = PASSWORD,
) -> User:
    n = next(_counter)
    user = User(username=username or f"staff{n}", role=role, municipality=municipality, school=school)
    user.set_password(password)
    user.save()
    return user


def api_document() -> dict[str, Any]:
    """The OpenAPI document, as a centre staff member reads it (it is for staff only)."""
    from django.test import Client

    client = Client()
    client.force_login(make_staff(Role.CENTRE))
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document

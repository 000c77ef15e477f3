"""`mimamori createstaff` and `mimamori apitoken`."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory

from mimamori.accounts.models import Role, User
from mimamori.registry.models import Municipality, School
from tests.cast import make_municipality, make_school, make_staff

pytestmark = pytest.mark.django_db

GOOD_PASSWORD = "kita-school-2026-staff"


def createstaff(*args: str, password: str = GOOD_PASSWORD) -> str:
    out = io.StringIO()
    call_command("createstaff", *args, "--password-stdin", stdin=io.StringIO(password + "\n"), stdout=out)
    return out.getvalue()


def test_createstaff_makes_a_school_login_that_works() -> None:
    school = make_school()
    output = createstaff("kita-teacher", "--role", "school", "--school", str(school.pk))
    assert "kita-teacher" in output
    user = User.objects.get(username="kita-teacher")
    assert (user.role, user.school, user.municipality) == (Role.SCHOOL, school, None)
    assert user.is_console_user
    request = RequestFactory().post("/console/login/")
    assert authenticate(request, username="kita-teacher", password=GOOD_PASSWORD) == user


def test_createstaff_for_centre_and_municipality() -> None:
    city = make_municipality("kita")
    createstaff("centre1", "--role", "centre")
    createstaff("kita-office", "--role", "municipality", "--municipality", "kita")
    assert User.objects.get(username="centre1").role == Role.CENTRE
    assert User.objects.get(username="kita-office").municipality == city


@pytest.fixture
def school() -> School:
    return make_school()


@pytest.fixture
def city() -> Municipality:
    return make_municipality()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "school"], "--school ID"),
        (["--role", "municipality"], "--municipality CODE"),
        (["--role", "centre", "--municipality", "CITY"], "drop"),
        (["--role", "municipality", "--municipality", "CITY", "--school", "SCHOOL"], "not --school"),
        (["--role", "school", "--school", "SCHOOL", "--municipality", "CITY"], "not --municipality"),
        (["--role", "municipality", "--municipality", "nowhere"], "No municipality"),
        (["--role", "school", "--school", "999999"], "No school"),
    ],
)
def test_createstaff_refuses_wrong_scope(
    args: list[str], message: str, school: School, city: Municipality
) -> None:
    args = [a.replace("CITY", city.code).replace("SCHOOL", str(school.pk)) for a in args]
    with pytest.raises(CommandError, match=message):
        createstaff("someone", *args)
    assert not User.objects.filter(username="someone").exists()


def test_createstaff_refuses_an_unknown_role() -> None:
    with pytest.raises(CommandError):
        createstaff("someone", "--role", "admin")
    assert not User.objects.filter(username="someone").exists()


@pytest.mark.parametrize("password", ["short", "12345678901", "password123", ""])
def test_createstaff_refuses_weak_passwords(password: str) -> None:
    with pytest.raises(CommandError):
        createstaff("someone", "--role", "centre", password=password)
    assert not User.objects.filter(username="someone").exists()


def test_createstaff_refuses_a_taken_username() -> None:
    make_staff(Role.CENTRE, username="taken")
    with pytest.raises(CommandError, match="already exists"):
        createstaff("Taken", "--role", "centre")


def test_apitoken_prints_only_a_token_that_authenticates(school: School) -> None:
    make_staff(Role.SCHOOL, school=school, username="kita-teacher")
    out, err = io.StringIO(), io.StringIO()
    call_command("apitoken", "kita-teacher", stdout=out, stderr=err)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    raw = lines[0]
    assert f"school {school.pk}" in err.getvalue()
    response = Client().get("/api/v1/schools", headers={"Authorization": f"Bearer {raw}"})
    assert response.status_code == 200
    assert [s["id"] for s in response.json()] == [school.pk]


def test_apitoken_is_only_for_active_staff(school: School) -> None:
    staff = make_staff(Role.SCHOOL, school=school, username="gone")
    staff.is_active = False
    staff.save()
    with pytest.raises(CommandError, match="not active staff"):
        call_command("apitoken", "gone", stdout=io.StringIO())
    with pytest.raises(CommandError, match="No user"):
        call_command("apitoken", "nobody", stdout=io.StringIO())

"""`mimamori createstaff USERNAME --role ...`: add a console login for staff of any role."""

from __future__ import annotations

import getpass
import sys
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mimamori.accounts.models import Role, User
from mimamori.audit import log as audit
from mimamori.registry.models import Municipality, School


class Command(BaseCommand):
    help = "Create a staff login with its role and scope."
    stealth_options = ("stdin",)  # call_command(..., stdin=StringIO(...)) in tests, as createsuperuser

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=[r.value for r in Role])
        parser.add_argument("--municipality", metavar="CODE", help="Required for --role municipality.")
        parser.add_argument("--school", metavar="ID", type=int, help="Required for --role school.")
        parser.add_argument(
            "--password-stdin", action="store_true", help="Read the password from the first line of stdin."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"].strip()
        role = Role(options["role"])
        if not username:
            raise CommandError("USERNAME must not be empty.")
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"A user named {username!r} already exists.")
        municipality, school = self._scope(role, options["municipality"], options["school"])
        user = User(username=username, role=role, municipality=municipality, school=school)
        password = self._password(options, user)
        user.set_password(password)
        with transaction.atomic():
            user.full_clean()
            user.save()
            audit.record(
                "staff.created",
                actor_name=audit.command_actor(),
                target=f"user {username}",
                municipality=municipality or (school.municipality if school else None),
                role=role.value,
            )
        where = f" for {municipality or school}" if (municipality or school) else ""
        self.stdout.write(f"Created {role.value} staff {username}{where}.")

    def _scope(
        self, role: Role, code: str | None, school_id: int | None
    ) -> tuple[Municipality | None, School | None]:
        # Each role carries exactly its own scope (see User.Meta); say which part is wrong.
        if role == Role.CENTRE:
            if code or school_id is not None:
                raise CommandError("--role centre covers everything: drop --municipality and --school.")
            return None, None
        if role == Role.MUNICIPALITY:
            if school_id is not None:
                raise CommandError("--role municipality takes --municipality CODE, not --school.")
            if not code:
                raise CommandError("--role municipality needs --municipality CODE.")
            try:
                return Municipality.objects.get(code=code), None
            except Municipality.DoesNotExist:
                raise CommandError(f"No municipality with code {code!r}.") from None
        if code:
            raise CommandError("--role school takes --school ID, not --municipality.")
        if school_id is None:
            raise CommandError("--role school needs --school ID.")
        try:
            return None, School.objects.select_related("municipality").get(pk=school_id)
        except School.DoesNotExist:
            raise CommandError(f"No school with ID {school_id}.") from None

    def _password(self, options: dict[str, Any], user: User) -> str:
        if options["password_stdin"]:
            stream = options.get("stdin") or sys.stdin
            password = stream.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("The passwords do not match.")
        if not password:
            raise CommandError("The password must not be empty.")
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None
        return password

"""`mimamori apitoken USERNAME`: issue a REST API token for a staff member.

The token is printed once, alone on stdout, so a script can capture it; the scope goes to
stderr. Only its digest is stored.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mimamori.accounts.models import ApiToken, Role, User
from mimamori.audit import log as audit


class Command(BaseCommand):
    help = "Issue a new REST API token for a staff user and print it once."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        try:
            user = User.objects.select_related("municipality", "school").get(username=username)
        except User.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not user.is_console_user:
            raise CommandError(f"{username!r} is not active staff; API tokens are for staff only.")
        token, raw = ApiToken.issue(user)
        audit.record(
            "api_token.issued",
            actor_name=audit.command_actor(),
            target=f"user {username}",
            municipality=user.municipality or (user.school.municipality if user.school else None),
            token=token.prefix,
        )
        self.stderr.write(f"Token {token.prefix}… for {username}, scope: {_scope(user)}.")
        self.stdout.write(raw)


def _scope(user: User) -> str:
    if user.role == Role.CENTRE:
        return "support centre (everything)"
    if user.role == Role.MUNICIPALITY and user.municipality is not None:
        return f"municipality {user.municipality.code} ({user.municipality.name})"
    if user.school is not None:
        return f"school {user.school.pk} ({user.school.name})"
    return user.role

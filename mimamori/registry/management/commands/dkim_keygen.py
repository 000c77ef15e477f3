"""`mimamori dkim-keygen --municipality CODE [--selector NAME]`: a DKIM key for the municipality's
mail domain, which signs every mail of that domain from now on (mail/signing.py).

The last line printed is the DNS record to publish, and nothing else, so a script can take it:
``<selector>._domainkey.<mail domain> TXT "v=DKIM1; k=rsa; p=…"``. The private key is stored in
the database and printed nowhere. A second key for the same domain replaces the first, whose
record should stay published for a few days (docs/operations.md, "Mail relay, SPF and DKIM").
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mimamori.audit import log as audit
from mimamori.mail import signing
from mimamori.registry.models import Municipality


class Command(BaseCommand):
    help = "Create a DKIM signing key for a municipality's mail domain and print the DNS record to publish."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--municipality", metavar="CODE", required=True)
        parser.add_argument(
            "--selector",
            metavar="NAME",
            help="The key's selector (default mimamori<yyyymm>); a domain never uses one twice.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        code: str = options["municipality"]
        try:
            municipality = Municipality.objects.get(code=code)
        except Municipality.DoesNotExist:
            raise CommandError(f"No municipality with code {code!r}.") from None
        with transaction.atomic():
            try:
                key, previous = signing.generate(municipality.mail_domain, options["selector"])
            except ValueError as error:
                raise CommandError(str(error)) from None
            audit.record(
                "dkim.key_created",
                actor_name=audit.command_actor(),
                target=f"municipality {municipality.code}",
                municipality=municipality,
                domain=key.domain,
                selector=key.selector,
                replaced=previous.selector if previous else None,
            )
        self.stdout.write(
            f"Created the DKIM key {key.selector} for {key.domain} ({municipality.name}): "
            f"every mail from {key.domain} is signed with it from now on."
        )
        if previous is not None:
            self.stdout.write(
                f"It replaces {previous.selector}: keep {previous.record_name} published for a few "
                "days more, for mail signed with it that is still on its way."
            )
        self.stdout.write("Publish this TXT record (the console's DNS page checks it):")
        self.stdout.write(f'{key.record_name} TXT "{key.record_value}"')

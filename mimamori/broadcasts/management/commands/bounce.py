"""`mimamori bounce [RECIPIENT]`: record one bounce read from standard input.

For a Postfix pipe transport (deploy/postfix/): ``argv=… mimamori bounce ${recipient}``. Without
RECIPIENT the envelope recipient is read from X-Original-To, Delivered-To or To. Exit status 0
when the bounce was recorded or is none of ours to record (logged); 75 (EX_TEMPFAIL, which makes
Postfix try again later) when it could not be stored, e.g. with the database away.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from mimamori.broadcasts.bounces import ingest

log = logging.getLogger("mimamori.bounce")

EX_TEMPFAIL = 75
LARGEST = 10 * 1024 * 1024  # a bounce quotes the mail at most; anything larger is not one


class Command(BaseCommand):
    help = "Record one bounce message read from standard input (a Postfix pipe transport's command)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("recipient", nargs="?", default="", help="The envelope recipient (${recipient}).")

    def handle(self, *args: Any, **options: Any) -> None:
        raw = sys.stdin.buffer.read(LARGEST + 1)
        if len(raw) > LARGEST:
            log.warning("bounce ignored: larger than %d bytes", LARGEST)
            return
        try:
            outcome = ingest(raw, options["recipient"])
        except DatabaseError:
            log.exception("bounce not stored; the relay will offer it again")
            sys.exit(EX_TEMPFAIL)
        log.info("bounce %s", outcome)
        if options["verbosity"] > 1:
            self.stdout.write(outcome)

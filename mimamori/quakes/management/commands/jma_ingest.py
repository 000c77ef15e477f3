"""`mimamori jma-ingest FILE`: ingest one JMA disaster XML document (`-`: standard input).

For an operator replaying a document, a drill with a 訓練 document, or a receiver other than the
Atom feed (a JMA-licensed push service that writes each document to a pipe). Exit status 0 when
the document was ingested or had been before (said so); 1 with a one-line reason when it was
refused; 75 (EX_TEMPFAIL) when the database could not take it, so a pipe's sender tries again.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from mimamori.quakes.ingest import ingest
from mimamori.quakes.jma import MAX_DOCUMENT_BYTES

EX_TEMPFAIL = 75


class Command(BaseCommand):
    stealth_options = ("stdin",)
    help = (
        "Ingest one JMA disaster XML document (震度速報 VXSE51 or 震源・震度に関する情報 VXSE53) from "
        "FILE, or from standard input with '-'."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The document's path, or '-' for standard input.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"] == "-":
            stream = options.get("stdin") or sys.stdin
            raw = getattr(stream, "buffer", stream).read(MAX_DOCUMENT_BYTES + 1)
            data = raw.encode() if isinstance(raw, str) else raw
            source = "standard input"
        else:
            path = Path(options["file"])
            try:
                with path.open("rb") as file:
                    data = file.read(MAX_DOCUMENT_BYTES + 1)
            except OSError as error:
                raise CommandError(f"cannot read {path}: {error.strerror or error}") from None
            source = str(path.resolve())
        try:
            outcome = ingest(data, source)
        except DatabaseError as error:
            reason = f"not stored, the database is unavailable: {error}".splitlines()[0]
            raise CommandError(reason, returncode=EX_TEMPFAIL) from None
        document = outcome.document
        if document.refused:
            again = " (as before)" if outcome.duplicate else ""
            raise CommandError(f"refused{again}: {document.refused} (document {document.pk})")
        if outcome.duplicate:
            self.stdout.write(f"already ingested as document {document.pk}; nothing done again")
            return
        report = outcome.report
        assert report is not None
        self.stdout.write(
            f"ingested as document {document.pk}: {report.kind} {report.title} {report.status} "
            f"{report.info_type}, EventID {report.event_id}, serial {report.serial}, "
            f"max intensity {report.max_intensity or '-'}"
        )

"""`mimamori import-roster FILE.csv --school ID [--letters OUT.html]` (P8)."""

from __future__ import annotations

import os
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from tqdm import tqdm

from mimamori.audit import log as audit
from mimamori.registry.letters import letters_html
from mimamori.registry.models import School
from mimamori.registry.roster import Progress, create_registrants, read_roster


class Command(BaseCommand):
    help = "Import a roster CSV for one school, all or nothing, and write the registration letters."
    # A data command run by hand, often several times in a row while fixing a file: the
    # full system check (seconds at start-up) belongs to `check` and deployment.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("file", type=Path, help="Roster CSV (UTF-8 with or without BOM, or CP932).")
        parser.add_argument("--school", metavar="ID", type=int, required=True)
        parser.add_argument(
            "--letters",
            metavar="OUT.html",
            type=Path,
            help="Where to write the letters (default: <FILE stem>-letters.html next to FILE).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Operators read the report, and guardians the letters, in the site's language.
        with translation.override(settings.LANGUAGE_CODE):
            self._import(options["file"], options["school"], options["letters"])

    def _import(self, path: Path, school_id: int, letters_path: Path | None) -> None:
        try:
            school = School.objects.select_related("municipality").get(pk=school_id)
        except School.DoesNotExist:
            raise CommandError(_("There is no school with ID %(id)d.") % {"id": school_id}) from None
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CommandError(f"{path}: {error.strerror}") from None
        letters_path = letters_path or path.with_name(f"{path.stem}-letters.html")

        with self._bar(_("Checking")) as progress:
            roster = read_roster(school, data, progress)
        # One transaction around import and letters: codes nobody can print are useless,
        # so a letters file that cannot be written undoes the import.
        with transaction.atomic():
            if roster.ok:
                with self._bar(_("Importing")) as progress:
                    create_registrants(school, roster, progress)
            if roster.ok:
                self._write_letters(letters_path, letters_html(roster.enrolments))
                audit.record(
                    "registrant.imported",
                    actor_name=audit.command_actor(),
                    target=f"school {school.pk}",
                    municipality=school.municipality,
                    count=len(roster.enrolments),
                )
        if not roster.ok:
            for problem in roster.errors:
                where = _("line %(line)d") % {"line": problem.line} if problem.line else _("file")
                column = f" [{problem.column}]" if problem.column else ""
                self.stderr.write(f"{path.name}: {where}{column}: {problem.message}")
            raise CommandError(
                _("%(count)d error(s): nothing was imported. Correct the file and run the import again.")
                % {"count": len(roster.errors)}
            )
        self.stdout.write(
            _("%(count)d registrants created at %(school)s.")
            % {"count": len(roster.enrolments), "school": school.name}
        )
        self.stdout.write(
            _("Registration letters: %(path)s (print them, then delete the file: it contains the codes).")
            % {"path": letters_path}
        )

    def _write_letters(self, path: Path, html: str) -> None:
        try:
            # The letters hold working codes: readable by the operator only.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(html)
        except OSError as error:
            raise CommandError(f"{path}: {error.strerror}; " + _("nothing was imported.")) from None

    def _bar(self, label: str) -> _Bar:
        return _Bar(label, getattr(self.stderr, "_out", sys.stderr))


class _Bar:
    """A tqdm bar fed by the roster's progress(done, total) callback."""

    def __init__(self, label: str, stream: Any) -> None:
        self.label = label
        self.stream = stream
        self.bar: tqdm[Any] | None = None

    def __enter__(self) -> Progress:
        return self.update

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = tqdm(total=total, desc=self.label, unit=_("lines"), file=self.stream, leave=True)
        self.bar.update(done - self.bar.n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

"""`mimamori import-roster FILE.csv --school ID [--letters OUT.html]` (P8)."""

from __future__ import annotations

import gc
import os
import sys
import tempfile
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, transaction
from django.utils import translation
from django.utils.translation import gettext as _
from tqdm import tqdm

from mimamori.audit import log as audit
from mimamori.registry.models import School
from mimamori.registry.roster import Progress, RosterImport, create_registrants, read_roster


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
        # Thousands of rows and a batch of model instances at a time outlive several garbage
        # collections, and each full one walked every object there is, most of them Django's
        # own: a seventh of an import's time. Those stay to the end, out of the collector's sight.
        gc.freeze()
        try:
            # Operators read the report, and guardians the letters, in the site's language.
            with translation.override(settings.LANGUAGE_CODE):
                self._import(options["file"], options["school"], options["letters"])
        finally:
            gc.unfreeze()

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
        if roster.ok:
            self._create(school, roster, letters_path)
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
            % {"count": roster.created, "school": school.name}
        )
        self.stdout.write(
            _("Registration letters: %(path)s (print them, then delete the file: it contains the codes).")
            % {"path": letters_path}
        )

    def _create(self, school: School, roster: RosterImport, letters_path: Path) -> None:
        """Create the registrants, writing their letters beside ``letters_path`` as they are made.

        One transaction around import and letters: codes nobody can print are useless, so
        letters that cannot be written undo the import. The letters go to a hidden file that
        becomes ``letters_path`` only when every batch is in, so a failed import leaves no
        letters behind, nor spoils the file of an earlier import.
        """
        failure = _("nothing was imported.")
        try:
            # mkstemp makes the file 0600: the letters hold working codes, for the operator only.
            descriptor, part = tempfile.mkstemp(
                prefix=f".{letters_path.name}.", suffix=".part", dir=letters_path.parent
            )
        except OSError as error:
            raise CommandError(f"{letters_path}: {error.strerror}; {failure}") from None
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as out, transaction.atomic():
                with self._bar(_("Importing")) as progress:
                    create_registrants(school, roster, letters=out, progress=progress)
                if roster.ok:
                    audit.record(
                        "registrant.imported",
                        actor_name=audit.command_actor(),
                        target=f"school {school.pk}",
                        municipality=school.municipality,
                        count=roster.created,
                        tags=roster.tagged,
                    )
                    out.flush()
                    os.replace(part, letters_path)
        except OSError as error:
            raise CommandError(f"{letters_path}: {error.strerror}; {failure}") from None
        except DatabaseError as error:
            raise CommandError(f"{error}; {failure}") from None
        finally:
            if os.path.exists(part):
                os.unlink(part)

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

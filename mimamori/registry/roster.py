"""Roster import (P8): a school's CSV becomes registrants, all or nothing.

Rosters come out of school record systems and Excel, so the reader is forgiving about form
(CP932 or UTF-8 with or without BOM, Japanese or English headers, full-width digits,
「3年」「1組」) and strict about content: every bad cell is reported with its line and
column, and nothing is created until the whole file is clean. The registrants are then written
in batches (a few queries per thousand children), all in one transaction, and each batch's
registration letters are written out before the next batch is made, so an import's memory
does not grow with the roster.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils.translation import gettext as _

from mimamori import text
from mimamori.accounts.models import User
from mimamori.registry import tags
from mimamori.registry.addresses import clean_address_slots
from mimamori.registry.letters import LettersWriter
from mimamori.registry.models import SLOTS, Address, Registrant, RegistrantStatus, School, class_key
from mimamori.registry.registrants import InvalidChild, NewChild, enrol_many

Progress = Callable[[int, int], None]

# Children written per batch: large enough that the queries' round trips vanish, small enough
# that one batch's model instances and letters stay a few megabytes.
BATCH_SIZE = 1000

MAX_ROSTER_BYTES = 5 * 1024 * 1024  # a 1,000-child roster is well under 200 KB
MAX_NAME = 64
MAX_CLASS = 16

# Canonical key -> accepted headers, compared after NFKC, lower-casing and removing spaces.
# The first entry is the name used when reporting a missing column.
HEADERS: dict[str, tuple[str, ...]] = {
    "grade": ("学年", "grade"),
    "class_name": ("組", "class", "class_name", "クラス"),
    "child_name": ("児童氏名", "child_name", "氏名", "児童名"),
    "child_name_kana": ("ふりがな", "child_name_kana", "フリガナ", "よみがな"),
    **{f"address{s}": (f"メールアドレス{s}", f"address{s}", f"アドレス{s}") for s in SLOTS},
    "receive_broadcasts": ("連絡メール", "receive_broadcasts"),
    "tag_id": ("タグID", "tag_id", "ICタグ", "ICタグID"),
}
REQUIRED = ("grade", "class_name", "child_name")

_YES = {"1", "true", "yes", "on", "する", "受信する", "○", "有"}
_NO = {"0", "false", "no", "off", "しない", "受信しない", "×", "無"}


def _fold(value: str) -> str:
    # NFKC turns full-width digits and letters (Excel input in 全角) into ASCII.
    return unicodedata.normalize("NFKC", value).strip().lower().replace(" ", "")


_HEADER_KEYS = {_fold(alias): key for key, aliases in HEADERS.items() for alias in aliases}


@dataclass(frozen=True)
class RosterError:
    line: int  # line in the file, the header being line 1
    column: str  # the header as written in the file; "" for the whole file
    message: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RosterRow(NewChild):
    line: int


@dataclass
class RosterImport:
    rows: list[RosterRow] = field(default_factory=list)
    errors: list[RosterError] = field(default_factory=list)
    created: int = 0  # registrants created, once the import is done

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def tagged(self) -> int:
        """Rows that give their child an IC tag (the import's audit event says how many)."""
        return sum(1 for row in self.rows if row.tag_id)


class UndecodableRoster(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def roster_encoding(data: bytes) -> str:
    """The file's codec; UndecodableRoster when it is neither UTF-8 nor CP932."""
    try:
        data.decode("utf-8")
        # utf-8-sig reads UTF-8 with or without the BOM that Excel writes first.
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    try:
        # Excel on Japanese Windows saves "CSV" as CP932, a superset of Shift_JIS.
        data.decode("cp932")
        return "cp932"
    except UnicodeDecodeError as error:
        raise UndecodableRoster(
            data[: error.start].count(b"\n") + 1,
            _(
                "The file's character encoding could not be recognised. "
                "Please save it as CSV in UTF-8 or Shift_JIS (CP932)."
            ),
        ) from error


def _grade(value: str) -> int:
    folded = _fold(value).removesuffix("年生").removesuffix("年")
    if not folded.isdigit() or not 1 <= int(folded) <= 9:
        raise ValueError(_("The grade must be a number from 1 to 9."))
    return int(folded)


def _class_name(value: str) -> str:
    folded = class_key(value)
    if not folded:
        raise ValueError(_("Please enter the class."))
    if len(folded) > MAX_CLASS:
        raise ValueError(_("The class is too long (at most %(max)d characters).") % {"max": MAX_CLASS})
    return folded


def _receive(value: str) -> bool:
    folded = _fold(value)
    if folded == "" or folded in _YES:
        return True
    if folded in _NO:
        return False
    raise ValueError(_("Please write 1 (receive) or 0 (do not receive), or する/しない."))


class _Reader:
    """Validates one data row at a time, keeping only what duplicate detection needs."""

    def __init__(self, school: School, header: list[str], result: RosterImport) -> None:
        self.result = result
        self.columns: dict[str, int] = {}
        self.names: dict[str, str] = {}  # key -> header as written, for error reports
        for index, raw in enumerate(header):
            key = _HEADER_KEYS.get(_fold(raw))
            if key is None:
                continue  # school records carry other columns (出席番号, 性別...): ignore them
            if key in self.columns:
                self._error(1, raw.strip(), _("This column appears twice."))
                continue
            self.columns[key] = index
            self.names[key] = raw.strip()
        for key in REQUIRED:
            if key not in self.columns:
                self._error(1, HEADERS[key][0], _("This required column is missing from the header row."))
        self.seen: dict[tuple[str, int, str], int] = {}
        self.existing = set(
            Registrant.objects.filter(school=school, status=RegistrantStatus.ACTIVE).values_list(
                "child_name", "grade", "class_name"
            )
        )
        # Tags are unique in the school (every row: a deregistered child's tag is freed when it
        # leaves); an import never takes a tag from a child, it is refused instead.
        self.tags_seen: dict[str, int] = {}
        self.tags_taken: set[str] = (
            set(Registrant.objects.filter(school=school).exclude(tag_id="").values_list("tag_id", flat=True))
            if "tag_id" in self.columns
            else set()
        )

    def _error(self, line: int, column: str, message: str) -> None:
        self.result.errors.append(RosterError(line, column, message))

    def cell(self, cells: list[str], key: str) -> str:
        index = self.columns.get(key)
        return cells[index].strip() if index is not None and index < len(cells) else ""

    def read(self, line: int, cells: list[str]) -> None:
        before = len(self.result.errors)
        # The input rule first: every column read here is one line (a quoted cell may hold a
        # line break, which would end up in a mail header), and a NUL would reach the database.
        for key, index in self.columns.items():
            if index < len(cells) and (problem := text.problem(cells[index])):
                self._error(line, self.names[key], str(problem))
        if len(self.result.errors) > before:
            return
        values: dict[str, object] = {}
        for key, parse in (("grade", _grade), ("class_name", _class_name), ("receive_broadcasts", _receive)):
            try:
                values[key] = parse(self.cell(cells, key))
            except ValueError as error:
                self._error(line, self.names.get(key, ""), str(error))
        name = self.cell(cells, "child_name")
        kana = self.cell(cells, "child_name_kana")
        if not name:
            self._error(line, self.names["child_name"], _("Please enter the child's name."))
        for key, value in (("child_name", name), ("child_name_kana", kana)):
            if len(value) > MAX_NAME:
                self._error(
                    line,
                    self.names[key],
                    _("This name is too long (at most %(max)d characters).") % {"max": MAX_NAME},
                )
        addresses = [self.cell(cells, f"address{slot}") for slot in SLOTS]
        try:
            cleaned = clean_address_slots(addresses)
        except ValidationError as error:
            for key, messages in error.message_dict.items():
                for message in messages:
                    self._error(line, self.names.get(key, key), message)
        tag = self._tag(line, tags.normalize_tag(self.cell(cells, "tag_id")))
        if len(self.result.errors) > before:
            return
        identity = (name, int(str(values["grade"])), str(values["class_name"]))
        if identity in self.seen:
            self._error(
                line,
                self.names["child_name"],
                _("The same child (name, grade and class) is already on line %(line)d.")
                % {"line": self.seen[identity]},
            )
            return
        self.seen[identity] = line
        if identity in self.existing:
            self._error(
                line,
                self.names["child_name"],
                _("This child (name, grade and class) is already registered at this school."),
            )
            return
        self.result.rows.append(
            RosterRow(
                line=line,
                child_name=name,
                child_name_kana=kana,
                grade=identity[1],
                class_name=identity[2],
                addresses=tuple(cleaned[slot] for slot in SLOTS),
                receive_broadcasts=bool(values["receive_broadcasts"]),
                tag_id=tag,
            )
        )

    def _tag(self, line: int, tag: str) -> str:
        """The row's tag id, or "" after reporting why it cannot be given."""
        if not tag:
            return ""
        column = self.names.get("tag_id", "")
        if (problem := tags.tag_problem(tag)) is not None:
            self._error(line, column, problem)
        elif tag in self.tags_seen:
            self._error(
                line,
                column,
                _("The same tag ID is already on line %(line)d: one tag belongs to one child.")
                % {"line": self.tags_seen[tag]},
            )
        elif tag in self.tags_taken:
            self._error(line, column, _("This tag ID is already given to another child of this school."))
        else:
            self.tags_seen[tag] = line
            return tag
        return ""


def _records(data: bytes, encoding: str) -> Iterable[tuple[int, list[str]]]:
    """(first line number, cells) per CSV record; a quoted cell may span lines.

    Decoded as it is read: the whole text and its StringIO took about five times the file's size.
    """
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline=""))
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


# How the files that are not CSV text at all begin: a zip (.xlsx, .ods), an old Excel
# workbook (.xls), PDF, images; and UTF-16, which Excel writes as "Unicode text".
_BINARY_STARTS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x89PNG", b"\xff\xd8\xff", b"GIF8")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def is_binary(data: bytes) -> bool:
    """The file is not text: a known binary format, UTF-16, or control bytes all over its start
    (text holds none; a stray one in a cell of a text file is reported with its line and column)."""
    start = data[:4096]
    if start.startswith(_BINARY_STARTS + _UTF16_BOMS):
        return True
    return len(_CONTROL_BYTES.findall(start)) > max(2, len(start) // 100)


def read_roster(school: School, data: bytes, progress: Progress | None = None) -> RosterImport:
    """Parse and validate the whole file without writing anything."""
    result = RosterImport()
    if len(data) > MAX_ROSTER_BYTES:
        result.errors.append(RosterError(0, "", _("The file is too large (at most 5 MB).")))
        return result
    if is_binary(data):
        result.errors.append(
            RosterError(
                0,
                "",
                _(
                    "This is not a CSV text file (it looks like an Excel workbook or another "
                    "binary file). Please save the roster as CSV in UTF-8 or Shift_JIS (CP932)."
                ),
            )
        )
        return result
    try:
        encoding = roster_encoding(data)
    except UndecodableRoster as error:
        result.errors.append(RosterError(error.line, "", str(error)))
        return result
    try:
        # Counted first for the progress bar, then read one record at a time: keeping every
        # record's cells as well as the rows made of them doubled the memory a large roster took.
        count = sum(1 for _record in _records(data, encoding))
    except csv.Error as error:
        result.errors.append(RosterError(0, "", _("The file is not a valid CSV file: %s") % error))
        return result
    if not count:
        result.errors.append(RosterError(1, "", _("The file is empty: a header row is needed.")))
        return result
    records = iter(_records(data, encoding))
    _first_line, header = next(records)
    reader = _Reader(school, header, result)
    if result.errors:
        return result
    total = count - 1
    for done, (line, cells) in enumerate(records, start=1):
        # Excel leaves rows of bare commas after the data; they are not children.
        if any(cell.strip() for cell in cells):
            reader.read(line, cells)
        if progress and (done % BATCH_SIZE == 0 or done == total):
            progress(done, total)
    if not result.errors and not result.rows:
        result.errors.append(RosterError(2, "", _("The file has a header row but no children.")))
    return result


def create_registrants(
    school: School, roster: RosterImport, *, letters: TextIO, progress: Progress | None = None
) -> None:
    """Enrol every row of a clean roster, batch by batch in one transaction, and write the
    registration letters to ``letters`` as the batches are made.

    On any failure none is kept; what reached ``letters`` by then is to be thrown away
    (a rule the reader does not know about is reported in ``roster.errors``; a database error
    is raised).
    """
    if not roster.ok:
        raise ValueError("the roster has errors")
    rows = roster.rows
    writer = LettersWriter(letters, len(rows))
    batch: Sequence[RosterRow] = ()
    try:
        with transaction.atomic():
            for start in range(0, len(rows), BATCH_SIZE):
                batch = rows[start : start + BATCH_SIZE]
                # Nothing of a batch outlives its letters: memory stays that of one batch.
                writer.write(enrol_many(school, batch))
                if progress:
                    progress(start + len(batch), len(rows))
            writer.finish()
            # Once the outermost transaction (this one, or the command's around it) has
            # committed; robust: the import stands even if ANALYZE fails.
            transaction.on_commit(refresh_planner_statistics, robust=True)
    except InvalidChild as error:
        # Only a rule the reader does not know about ends up here; report it like the others.
        for message in error.messages:
            roster.errors.append(RosterError(batch[error.index].line, "", message))
        return
    roster.created = len(rows)


def refresh_planner_statistics() -> None:
    """ANALYZE the tables an import writes; run after the import has committed.

    An import adds thousands of rows in one transaction. PostgreSQL's autovacuum may ANALYZE
    those tables while it is still open, when its rows are invisible, and then the statistics
    say the tables are (nearly) empty until autovacuum comes round again: the first broadcast
    afterwards is planned with row estimates of 1, nested loops over every registrant in each
    fan-out slice (421 ms a slice query at 100,000 registrants instead of 24 ms). Analyzing
    after commit, outside the import's transaction, counts the rows. SQLite keeps statistics
    only when told to, so it is told after each import as well.
    """
    tables = [connection.ops.quote_name(model._meta.db_table) for model in (User, Registrant, Address)]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {', '.join(tables)}")
        else:
            for table in tables:
                cursor.execute(f"ANALYZE {table}")


def import_roster(
    school: School, data: bytes, progress: Progress | None = None, *, letters: TextIO
) -> RosterImport:
    """Read, validate and, only when every line is clean, create all registrants, writing
    their letters to ``letters`` (to be thrown away unless the result is ok)."""
    roster = read_roster(school, data, progress)
    if roster.ok:
        create_registrants(school, roster, letters=letters, progress=progress)
    return roster

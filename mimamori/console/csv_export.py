"""What every CSV export of the console shares (the unconfirmed list, 届かないアドレス).

Spreadsheets run a cell that starts with = + - @ (or TAB, CR) as a formula, and so may do
with their full-width forms (＝ ＋ － ＠) and the minus sign (−), which Japanese input
produces. A cell starting so gets a leading ' (OWASP, "CSV Injection"). Every cell is quoted,
so a spreadsheet that splits on ; or TAB (set so in many locales) keeps "a;=1+1" one cell;
such a cell is prefixed as well, in case it is pasted elsewhere.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from typing import Any

# After NFKC (which maps ＝ ＋ － ＠ and the small forms ﹦ ﹢ ﹣ ﹫ to ASCII), plus the
# minus signs NFKC keeps.
_TRIGGERS = "=+-@\t\r\n\u2212\u2796\ufe63"
_SEPARATOR_THEN_TRIGGER = re.compile(f"[,;\t|][ \u3000]*[{re.escape(_TRIGGERS)}]")


class CsvLine:
    """csv.writer writes into this and the stream takes each line as it comes."""

    def write(self, value: str) -> str:
        return value


def csv_writer() -> Any:
    """A writer for the console's exports: every cell quoted, lines ended by CRLF (Excel)."""
    return csv.writer(CsvLine(), lineterminator="\r\n", quoting=csv.QUOTE_ALL)


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    folded = unicodedata.normalize("NFKC", text)
    first = folded.lstrip(" ")[:1]
    if (first and first in _TRIGGERS) or _SEPARATOR_THEN_TRIGGER.search(folded):
        return f"'{text}"
    return text

"""What every CSV export of the console shares (the unconfirmed list, 届かないアドレス)."""

from __future__ import annotations


class CsvLine:
    """csv.writer writes into this and the stream takes each line as it comes."""

    def write(self, value: str) -> str:
        return value


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    # Excel runs a cell starting with = + - @ as a formula; a leading ' keeps it text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text

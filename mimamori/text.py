"""The one input rule (issue 13): what text typed into mimamori may contain, at every entry point.

Staff, guardians, integrations and roster files all reach the same fields, and a character that
one of them lets through ends up in a mail header (a CR/LF splits it), in PostgreSQL (a NUL is
refused there with a server error) or in a JSON encoder (a lone surrogate cannot be written as
UTF-8). So every entry point applies these checks before anything is changed:

- a single-line value (a name, a subject, an address, a filter) holds no control character at
  all: no C0 (NUL, TAB, CR, LF, …), no DEL, no C1, and no Unicode line or paragraph separator;
- a multi-line value (a body, a message) may hold TAB, LF and CR, and nothing else of those;
- no value holds a lone surrogate (U+D800–U+DFFF), which no UTF-8 text can carry;
- lengths and integer ranges are those of the field (the database's, at the most).

The checks return a message in the user's language (lazily translated) rather than raising, so
Django forms and validators, pydantic schemas and the roster reader can each report it their way.
"""

from __future__ import annotations

import re
from typing import cast

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

# The largest value of a PostgreSQL bigint (and of SQLite's INTEGER): ids, limits and offsets
# beyond it cannot be stored or compared, so they are refused as out of range.
MAX_BIGINT = 2**63 - 1

_SURROGATE = "\ud800-\udfff"
# C0 except TAB, LF, CR; DEL; C1.
_MULTI_LINE_FORBIDDEN = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
_SINGLE_LINE_FORBIDDEN = "\x00-\x1f\x7f-\x9f\u2028\u2029"

SINGLE_LINE = re.compile(f"[{_SINGLE_LINE_FORBIDDEN}{_SURROGATE}]")
MULTI_LINE = re.compile(f"[{_MULTI_LINE_FORBIDDEN}{_SURROGATE}]")

# The same rules as regular expressions a whole value must match, for JSON Schema's `pattern`
# (OpenAPI): written with escapes so the document stays plain ASCII.
SINGLE_LINE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"
MULTI_LINE_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"

SINGLE_LINE_MESSAGE = _(
    "This must be one line without control characters (line breaks, tabs or invisible characters)."
)
MULTI_LINE_MESSAGE = _("This contains a character that cannot be used (an invisible control character).")


def problem(value: str, *, multiline: bool = False) -> Promise | None:
    """What is wrong with ``value`` under the rule, or None when nothing is."""
    if multiline:
        return MULTI_LINE_MESSAGE if MULTI_LINE.search(value) else None
    return SINGLE_LINE_MESSAGE if SINGLE_LINE.search(value) else None


def is_clean(value: str, *, multiline: bool = False) -> bool:
    return problem(value, multiline=multiline) is None


@deconstructible
class TextValidator:
    """A Django validator for model and form fields: ``TextValidator()`` for one line,
    ``TextValidator(multiline=True)`` for text with line breaks."""

    code = "control_characters"

    def __init__(self, multiline: bool = False) -> None:
        self.multiline = multiline

    def __call__(self, value: object) -> None:
        if not isinstance(value, str):
            return
        message = problem(value, multiline=self.multiline)
        if message is not None:
            raise ValidationError(cast(str, message), code=self.code)  # a lazy str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextValidator) and other.multiline == self.multiline

    def __hash__(self) -> int:
        return hash((TextValidator, self.multiline))


single_line = TextValidator()
multi_line = TextValidator(multiline=True)

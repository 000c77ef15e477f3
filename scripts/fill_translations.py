"""Developer aid: fill a .po file from a table {msgid, or its first 26+ characters: translation}.

Usage: uv run --with polib python scripts/fill_translations.py PATH/django.po TABLE.py
where TABLE.py defines T = {...}. Prints the msgids still untranslated.
"""

import runpy
import sys

import polib  # type: ignore[import-not-found]


def main(po_path: str, table_path: str) -> None:
    po = polib.pofile(po_path)
    table = runpy.run_path(table_path)["T"]
    missing = []
    for entry in po:
        if entry.obsolete:
            continue
        hits = [
            v for k, v in table.items() if entry.msgid == k or (len(k) > 25 and entry.msgid.startswith(k))
        ]
        if hits:
            entry.msgstr = hits[0]
            if "fuzzy" in entry.flags:
                entry.flags.remove("fuzzy")
        elif not entry.msgstr and not any(entry.msgstr_plural.values()):
            missing.append(entry.msgid)
    po.save()
    print("untranslated:", missing)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

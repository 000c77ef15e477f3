"""Developer aid: fill a .po file from a table {msgid or its first 25+ characters: translation}.

Usage: uv run --with polib python scripts/fill_translations.py PATH/django.po TABLE.py
where TABLE.py defines T = {...}. Prints the msgids still untranslated.
"""
import sys, polib, runpy
po = polib.pofile(sys.argv[1])
table = runpy.run_path(sys.argv[2])["T"]
missing = []
for e in po:
    if e.obsolete: continue
    hit = [v for k, v in table.items() if e.msgid == k or (len(k) > 25 and e.msgid.startswith(k))]
    if hit:
        e.msgstr = hit[0]
        if "fuzzy" in e.flags: e.flags.remove("fuzzy")
    elif not e.msgstr:
        missing.append(e.msgid)
po.save()
print("untranslated:", missing)

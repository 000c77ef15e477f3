"""The character sets a mail can be written in, and the safe substitution ISO-2022-JP needs.

**UTF-8** (the default) writes every character staff and guardians type, in base64 so that the
mail is 7-bit clean. **ISO-2022-JP** (RFC 1468), which a carrier profile may choose for phones
that read it better, holds ASCII and JIS X 0208 only: 6,879 characters, without the ones
Japanese PCs and phones add to them. Those are what this module substitutes before a mail is
written in it, so that nothing reaches a guardian as ``?``, as an empty space or as garbage.

Why a substitution and not a wider codec. Python's ``iso2022_jp`` codec writes ASCII and JIS X
0208 (and JIS X 0201 Roman for ``¥`` and ``‾``, which we avoid, below); ``iso2022_jp_ext`` and
``iso2022_jp_1``/``_2`` add half-width katakana and JIS X 0212, which RFC 1468 does not allow
and phones do not read. What Windows and phones actually type beyond JIS X 0208 is CP932
(Windows-31J): NEC row 13 (①, Ⅰ, ㈱, ㍻ …) and the IBM extensions (髙, 﨑, ⅰ …). Mail that
carries those under the name ISO-2022-JP is really CP50220 (its IANA registration; Microsoft's
codepage 50220), for which Python has no codec and which a strict decoder (Python's own, many
mail programs, a phone's mail forwarded to a PC) refuses or shows as ``?``. Handsets of the
three carriers are Shift_JIS inside and display NEC row 13, but none of them officially supports
the IBM extensions (moji-memo's survey of carrier character sets), and a guardian may read the
mail elsewhere. So we write plain ISO-2022-JP, which every Japanese mail reader decodes, and
change the text first, visibly and the same way every time.

The table, in the order it is applied to each character (or cluster) the codec cannot write:

1. **Characters CP932 maps to other code points than JIS X 0208 does** (Microsoft's CP932 table
   against Unicode's JIS0208 mapping, which Python follows): ～ (U+FF5E) → 〜 (U+301C), － → −,
   ∥ → ‖, ￠ → ¢, ￡ → £, ￢ → ¬, — (U+2014) → ― (U+2015). The same glyph on the phone.
   ¥ → ￥ and ‾ → ￣, so that no JIS X 0201 Roman escape is needed.
2. **Half-width katakana** → full-width, by NFKC on each run (ｶﾞ → ガ, one character).
3. **Variant kanji** (IBM extensions, JIS X 0213 additions, the ones names are written with) →
   the JIS X 0208 form they are read as: 髙 → 高, 﨑 → 崎, 德 → 徳, 栁 → 柳, 瀨 → 瀬, 濵 → 濱,
   𠮷 → 吉, 鷗 → 鴎, 剝 → 剥 … (``_TABLE``); CJK compatibility ideographs (塚, 神, 隆 of the
   IBM extensions) → their canonical form (NFC). A kanji with no such form (彅 of 草彅, 𩸽) →
   〓.
4. **NEC row 13 and other enclosed or squared forms**: circled ones get brackets, ① → (1),
   ⑳ → (20), ㊤ → (上), Ⓐ → (A), 1️⃣ → (1); the rest by their compatibility decomposition
   (NFKC): ㈱ → (株), ㈲ → (有), ⑴ → (1), Ⅳ → IV, ⅱ → ii, ㍉ → ミリ, ㎝ → cm, ㎡ → m2, ㍻ → 平成,
   ℡ → TEL, ™ → TM; by hand: № → No., 〝〟 → “”, ∑ → Σ, ½ → 1/2.
5. **Accented Latin letters** lose the accent (é → e), **other spaces** become a space, and
   **invisible marks** (zero-width space, byte-order mark, variation selectors, joiners, and the
   control characters ESC, SO and SI, which would change the ISO-2022-JP state) are dropped.
6. **Everything else** (emoji, ♡, ∮, Hangul, kanji outside JIS X 0208 without a known form)
   → 〓 (U+3013, GETA MARK), the convention of JIS typesetting and of Japanese phones for a
   character that cannot be shown; an emoji sequence (👨‍👩‍👧, a flag) is one 〓. Never ``?``,
   and nothing visible is dropped without a mark: staff are warned beforehand (``changes``).

Lines longer than RFC 5322's 998 octets, which relays break wherever they are (in the middle of
an escape sequence, for ISO-2022-JP), are broken before a character instead (``body_text``).
"""

from __future__ import annotations

import re
import unicodedata

UTF8 = "utf-8"
ISO2022JP = "iso-2022-jp"
NAMES = {UTF8: "UTF-8", ISO2022JP: "ISO-2022-JP"}  # as mail headers and staff write them
GETA = "\u3013"
LINE_OCTETS = 998  # RFC 5322 2.1.1

_CODEC = "iso2022_jp"
_ROMAN = b"\x1b(J"  # JIS X 0201 Roman: RFC 1468 allows it, but it is not needed and less read
_STATE = frozenset("\x1b\x0e\x0f")  # ESC, SO, SI: they would switch the decoder's state

_TABLE = {
    # CP932's code points for JIS X 0208 characters (MICSFT/WINDOWS/CP932.TXT vs JIS0208.TXT).
    "\uff5e": "\u301c",  # ～ FULLWIDTH TILDE → 〜 WAVE DASH
    "\uff0d": "\u2212",  # － FULLWIDTH HYPHEN-MINUS → − MINUS SIGN
    "\u2225": "\u2016",  # ∥ PARALLEL TO → ‖ DOUBLE VERTICAL LINE
    "\uffe0": "\u00a2",  # ￠ → ¢
    "\uffe1": "\u00a3",  # ￡ → £
    "\uffe2": "\u00ac",  # ￢ → ¬
    "\u2014": "\u2015",  # — EM DASH → ― HORIZONTAL BAR
    "\uffe4": "\uff5c",  # ￤ FULLWIDTH BROKEN BAR → ｜
    # JIS X 0201 Roman's two letters, written in JIS X 0208 instead.
    "\u00a5": "\uffe5",  # ¥ → ￥
    "\u203e": "\uffe3",  # ‾ → ￣
    # Dashes JIS X 0208 lacks.
    "\u2013": "-",  # – EN DASH (10–12時)
    "\u2012": "-",  # ‒ FIGURE DASH
    "\u2043": "-",  # ⁃ HYPHEN BULLET
    "\u2e3a": "\u2015\u2015",  # ⸺ TWO-EM DASH
    # NEC row 13 without a compatibility decomposition that reads well.
    "\u2116": "No.",  # №
    "\u301d": "\u201c",  # 〝 → “
    "\u301f": "\u201d",  # 〟 → ”
    "\u301e": "\u201d",  # 〞 → ”
    "\u2211": "\u03a3",  # ∑ → Σ
    "\u00bd": "1/2",
    "\u00bc": "1/4",
    "\u00be": "3/4",
    # Variant kanji → the JIS X 0208 form they are read as (IBM extensions of CP932, JIS X 0213
    # additions of the 2010 jōyō list, and the forms names are registered with).
    "\u9ad9": "高",  # 髙
    "\ufa11": "崎",  # 﨑
    "\u5fb7": "徳",  # 德
    "\u6801": "柳",  # 栁
    "\u7028": "瀬",  # 瀨
    "\u6ff5": "濱",  # 濵
    "\u663b": "昂",  # 昻
    "\u9115": "郷",  # 鄕
    "\u9751": "青",  # 靑
    "\u6df8": "清",  # 淸
    "\u589e": "増",  # 增
    "\u5bec": "寛",  # 寬
    "\u9ed1": "黒",  # 黑
    "\ufa14": "欅",  # 﨔
    "\u7da0": "緑",  # 綠
    "\u7dd6": "緒",  # 緖
    "\u6a6b": "横",  # 橫
    "\u654e": "教",  # 敎
    "\u6085": "悦",  # 悅
    "\u90de": "郎",  # 郞
    "\u8cf4": "頼",  # 賴
    "\u85b0": "薫",  # 薰
    "\u9592": "閑",  # 閒
    "\u7501": "瓶",  # 甁
    "\u7fa1": "羨",  # 羡
    "\u6852": "桑",  # 桒
    "\u66fb": "昇",  # 曻
    "\u519d": "宜",  # 冝
    "\u51de": "熙",  # 凞
    "\U00020bb7": "吉",  # 𠮷 (つちよし)
    "\u9dd7": "鴎",  # 鷗
    "\u8523": "蒋",  # 蔣
    "\u69d7": "橋",  # 槗
    "\u525d": "剥",  # 剝
    "\U00020b9f": "叱",  # 𠮟
    "\u9830": "頬",  # 頰
    "\u5861": "填",  # 塡
    "\u5c5b": "屏",  # 屛
    "\u59f8": "妍",  # 姸
}

# Marks that only modify the character before them: variation selectors, emoji skin tones and
# tags, the keycap, combining marks (an accent, a voicing mark written apart: か + ゙).
_MARKS = (
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\u3099\u309a\ufe00-\ufe0f\ufe20-\ufe2f"
    "\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f\U000e0100-\U000e01ef"
)
_KEYCAP = "\u20e3"
_JOINER = "\u200d"
# What is changed as one: a run of half-width katakana; a flag (two regional indicators); a
# character with the marks after it and the characters joined to it (an emoji sequence).
_CLUSTER = re.compile(
    f"[\uff61-\uff9f]+|[\U0001f1e6-\U0001f1ff]{{2}}|.[{_MARKS}]*(?:{_JOINER}.[{_MARKS}]*)*",
    re.DOTALL,
)
_HALF_WIDTH = re.compile("[\uff61-\uff9f]")
_MARK = re.compile(f"[{_MARKS}{_JOINER}]")
_FLAG = re.compile("[\U0001f1e6-\U0001f1ff]")


def fits(text: str, charset: str = ISO2022JP) -> bool:
    """Whether ``text`` is written in ``charset`` exactly as it is."""
    if charset != ISO2022JP:
        return True
    try:
        encoded = text.encode(_CODEC)
    except UnicodeEncodeError:
        return False
    return _ROMAN not in encoded and _STATE.isdisjoint(text)


def substitute(text: str) -> str:
    """``text`` as ISO-2022-JP can hold it: unchanged if it can, else changed as the module's
    table says, with 〓 for what has no substitute. Never a ``?``."""
    if fits(text):
        return text
    return "".join(_replacement(match.group()) for match in _CLUSTER.finditer(text))


def written(text: str, charset: str) -> str:
    """``text`` as a mail in ``charset`` carries it (headers and body alike)."""
    return substitute(text) if charset == ISO2022JP else text


def body_text(text: str, charset: str) -> str:
    """A mail body as it is written in ``charset``: substituted, and for ISO-2022-JP, which is
    sent as it is (7bit), with no line longer than RFC 5322 allows."""
    if charset != ISO2022JP:
        return text
    text = substitute(text)
    if max(map(len, text.encode(_CODEC).split(b"\n"))) <= LINE_OCTETS:
        return text  # (each line starts and ends in ASCII: the encoder goes back before a newline)
    return "".join(_short_lines(line) for line in text.splitlines(keepends=True))


def changes(text: str, charset: str = ISO2022JP) -> list[tuple[str, str]]:
    """What writing ``text`` in ``charset`` changes: (what was typed, what is sent), each once,
    in the order they first appear."""
    if charset != ISO2022JP or fits(text):
        return []
    found: dict[str, str] = {}
    for match in _CLUSTER.finditer(text):
        typed = match.group()
        if typed not in found and not fits(typed):
            found[typed] = _replacement(typed)
    # Not what a reader could tell apart: the same character composed (か + ゙ → が, 塚 → 塚), a
    # variation selector or an invisible character dropped, another space made a space.
    return [
        (typed, sent)
        for typed, sent in found.items()
        if _visibly(typed) != sent and _visibly(typed).isprintable()
    ]


def _visibly(text: str) -> str:
    return _MARK.sub("", unicodedata.normalize("NFC", text))


def _replacement(cluster: str) -> str:
    if fits(cluster):
        return cluster
    if _HALF_WIDTH.match(cluster):
        return "".join(_one(character) for character in unicodedata.normalize("NFKC", cluster))
    composed = unicodedata.normalize("NFC", cluster)
    if fits(composed):
        return composed  # か + ゙ → が; a compatibility ideograph → its unified form
    if _KEYCAP in cluster and fits(cluster[0]):
        return f"({cluster[0]})"  # 1️⃣ → (1), as ① is
    visible = _MARK.sub("", cluster)
    if (len(visible) > 1 and _JOINER in cluster) or _FLAG.match(cluster):
        return GETA  # one picture: an emoji sequence or a flag
    return "".join(_one(character) for character in visible)


def _one(character: str) -> str:
    """One character ISO-2022-JP cannot hold, substituted (step 1 to 6 of the module's table)."""
    if fits(character):
        return character
    if character in _TABLE:
        return _TABLE[character]
    category = unicodedata.category(character)
    if category in ("Cc", "Cf", "Mn", "Me") or _MARK.match(character):
        return ""  # invisible: a control character, a format mark, an accent on its own
    if category == "Zs":
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    folded = unicodedata.normalize("NFKC", character)
    if "CIRCLED" in unicodedata.name(character, ""):
        inner = folded if folded != character else _number(character)
        if inner and fits(inner):
            return f"({inner})"
    if folded != character and fits(folded):
        return folded
    bare = "".join(c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c))
    if bare and bare != character and fits(bare):
        return bare
    return GETA


def _number(character: str) -> str:
    value = unicodedata.numeric(character, -1)
    return str(int(value)) if value >= 0 and value == int(value) else ""


def _short_lines(line: str) -> str:
    """A line of at most LINE_OCTETS octets once encoded, else broken before the character that
    would pass it (a line keeps its own line ending)."""
    body = line.rstrip("\r\n")
    ending = line[len(body) :]
    parts = []
    while len(body.encode(_CODEC)) > LINE_OCTETS:
        low, high = 1, len(body)  # the longest start that fits: low fits, high does not
        while high - low > 1:
            middle = (low + high) // 2
            if len(body[:middle].encode(_CODEC)) <= LINE_OCTETS:
                low = middle
            else:
                high = middle
        parts.append(body[:low])
        body = body[low:]
    parts.append(body)
    return "\n".join(parts) + ending

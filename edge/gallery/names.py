"""People's names: what is refused outright and what is flagged as a look-alike.

A name shows up in the audit log, the journal and the CLI, and an admin
types it to remove someone. So:

* refused (:class:`InvalidName`): empty, too long, control characters,
  bidirectional overrides and isolates (which reorder what a log shows),
  zero-width and other default-ignorable characters, invisible fillers,
  separators other than a plain space, stacks of combining marks, and names
  with no letter or digit at all;
* flagged (:class:`LookalikeName`, unless the caller allows it): a new name
  whose *skeleton* equals an enrolled person's (Cyrillic "Аlice" or
  fullwidth "Ａlice" next to Latin "Alice", or a mere case change), and a
  name that mixes Latin with Cyrillic or Greek letters.

The skeleton is NFKC (folds fullwidth and other compatibility forms),
case-folded, with accents dropped and the common Cyrillic and Greek letters
that look Latin mapped to their Latin twin (our own short table: the full
Unicode confusables list is far larger than a door needs).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ..errors import InvalidName, LookalikeName

__all__ = ["MAX_NAME_LENGTH", "check_name", "lookalike_of", "scripts", "skeleton"]

MAX_NAME_LENGTH = 64
#: More combining marks than this on one letter is "zalgo" text, not a name.
MAX_MARKS_PER_LETTER = 3

# Default-ignorable code points that are not in category C* (those are refused anyway):
# combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian
# variation selectors, variation selectors, plus visually blank symbols.
_INVISIBLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, 0x2800, 0x180E}
_INVISIBLE_RANGES = ((0x180B, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))

# Letters of other scripts that render like Latin ones (lower case after casefold).
_LOOKALIKE = str.maketrans({
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "з": "3", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "һ": "h", "ү": "y", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    # Latin look-alikes of other letters and digits
    "ı": "i", "ł": "l", "ø": "o", "0": "o", "1": "l", "|": "l",
})


def _invisible(cp: int) -> bool:
    return cp in _INVISIBLE or any(lo <= cp <= hi for lo, hi in _INVISIBLE_RANGES)


def check_name(name: str) -> str:
    """The canonical form of a person's name (NFC, stripped), or :class:`InvalidName`."""
    if not isinstance(name, str):
        raise InvalidName(f"name must be a string, got {type(name).__name__}")
    clean = unicodedata.normalize("NFC", name).strip(" ")
    if not clean:
        raise InvalidName("name must not be empty")
    if len(clean) > MAX_NAME_LENGTH:
        raise InvalidName(f"name is {len(clean)} characters long; the limit is {MAX_NAME_LENGTH}")
    marks = 0
    for ch in clean:
        cp, cat = ord(ch), unicodedata.category(ch)
        if cat.startswith("C") or cat in ("Zl", "Zp") or (cat == "Zs" and ch != " ") or _invisible(cp):
            # ascii() keeps the message itself free of the offending character
            raise InvalidName(f"name {ascii(clean)} contains a control, invisible or formatting character "
                              f"(U+{cp:04X} {unicodedata.name(ch, 'unnamed')})")
        marks = marks + 1 if cat.startswith("M") else 0
        if marks > MAX_MARKS_PER_LETTER:
            raise InvalidName(f"name {ascii(clean)} stacks more than {MAX_MARKS_PER_LETTER} combining marks")
    if "  " in clean:
        raise InvalidName(f"name {clean!r} contains consecutive spaces")
    if not any(unicodedata.category(ch)[0] in "LN" for ch in clean):
        raise InvalidName(f"name {clean!r} has no letter or digit")
    return clean


def skeleton(name: str) -> str:
    """What a name looks like: equal skeletons are hard to tell apart on a screen."""
    s = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
    s = "".join(ch for ch in s if not unicodedata.category(ch).startswith("M"))
    return " ".join(s.translate(_LOOKALIKE).split())


def scripts(name: str) -> set[str]:
    """The alphabetic scripts of a name's letters (first word of each Unicode name)."""
    found = set()
    for ch in unicodedata.normalize("NFKC", name):
        if unicodedata.category(ch).startswith("L"):
            found.add(unicodedata.name(ch, "UNKNOWN").split()[0])
    return found


def lookalike_of(name: str, enrolled: Iterable[str]) -> str | None:
    """Why ``name`` should be flagged against the ``enrolled`` names, or None.

    An exact match is not a look-alike (it is the same person).
    """
    sk = skeleton(name)
    for other in enrolled:
        if other != name and skeleton(other) == sk:
            return f"name {name!r} looks like the enrolled {other!r}"
    mixed = scripts(name) & {"CYRILLIC", "GREEK"}
    if mixed and "LATIN" in scripts(name):
        return f"name {name!r} mixes Latin with {' and '.join(sorted(s.title() for s in mixed))} letters"
    return None


def refuse_lookalike(name: str, enrolled: Iterable[str]) -> None:
    why = lookalike_of(name, enrolled)
    if why is not None:
        raise LookalikeName(f"{why}; use the exact enrolled spelling to add templates, "
                            "or allow look-alike names explicitly (--allow-lookalike)")

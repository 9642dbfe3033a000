"""A reading that stops inside a known value: how much of the value lies beyond the box.

Why: the detector draws a line's box from the contrast it sees, and faint text running
onto bright anatomy loses its last letters to it ("Northgate Regional Medica" for
"... Medical Ctr", "Born 1934-01" for "1934-01-21"). The recogniser reads what the box
holds, the matcher knows the value, and the value says how many characters the box
missed: the fill is widened by that many character widths. The re-check would have to
find those few faint letters on their own, which is where it fails.

Only a reading whose first or last characters continue a value of this instance counts:
at least :data:`MIN_RUN` letters or digits, and more than two thirds of the value's, the
same exactly. (With less, a whole date or time in one form reads as part of the same
value in another: "03/14/1952" and "1952-03-14" share "0314", "1999-04-28" starts with
the end of "28.4.1999", a clock's "19:26" is two thirds of "19:26:18".) Each side takes
the longest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MIN_RUN = 4  # letters or digits the reading and the value must share at the cut
_ALNUM = re.compile(r"[0-9a-z\u00c0-\u024f]")


class KnownValues:
    """An instance's values, each as its letters and digits (lower case), the raw index of
    each, and its raw length: prepared once, since every line of the instance is held
    against all of them (redoing it per line was half of the matcher's time)."""

    def __init__(self, values: Iterable[str]) -> None:
        self.items: list[tuple[str, tuple[int, ...], int]] = []
        for value in values:
            v = value.lower()
            where = tuple(i for i, c in enumerate(v) if _ALNUM.match(c))
            if len(where) > MIN_RUN:
                self.items.append(("".join(v[i] for i in where), where, len(v)))

    def __bool__(self) -> bool:
        return bool(self.items)


def missing_ends(text: str, values: Iterable[str] | KnownValues) -> tuple[int, int]:
    """(characters of a value before the reading's start, after its end), counting the
    value's own spaces and punctuation; (0, 0) when the reading holds its values whole."""
    t = "".join(_ALNUM.findall(text.lower()))
    if len(t) < MIN_RUN:
        return 0, 0
    known = values if isinstance(values, KnownValues) else KnownValues(values)
    before = after = 0
    for vn, where, raw_len in known.items:
        least = max(MIN_RUN, 2 * len(vn) // 3 + 1)
        after = max(after, _tail(t, vn, where, raw_len, least))
        before = max(before, _head(t, vn, where, least))
    return before, after


def _tail(t: str, vn: str, where: Sequence[int], raw_len: int, least: int) -> int:
    """The reading ends inside the value: the value's characters after that point."""
    for k in range(min(len(t), len(vn) - 1), least - 1, -1):
        j = vn.find(t[-k:])
        while j >= 0:
            if j + k < len(vn):
                return raw_len - (where[j + k - 1] + 1)
            j = vn.find(t[-k:], j + 1)
    return 0


def _head(t: str, vn: str, where: Sequence[int], least: int) -> int:
    """The reading starts inside the value: the value's characters before that point."""
    for k in range(min(len(t), len(vn) - 1), least - 1, -1):
        j = vn.find(t[:k], 1)
        if j > 0:
            return where[j]
    return 0

"""What a job wrote besides its outputs, and the names of everything it wrote: none may hold
a source value or a source file's name.

Two things made the old scan cry wolf, and each is answered here by looking at what
phiscrub stored rather than at the bytes of its files:

- the SQLite state is read through SQLite, row by row, so the words of its own schema
  ('DEFAULT', 'NOT NULL') are not taken for a department called DEFAULT;
- the audit log is read record by record, field by field. Fields whose values are
  phiscrub's own vocabulary (event, status, category, ...) and the keys of every record
  are not source values; keyed hashes are blanked before a value is scanned.

A source's file and folder names are matched as names: a whole path component (or its
stem), anywhere in a path or a whole stored value, and inside other text only when the
name could not be an ordinary word (it holds a digit, '_', '-', '.', or a space). So a
source called 'truncated.dcm' is not found in phiscrub's reason 'truncated: the last
data element is cut short', while 'CT_small' is found in any text that holds it.

Many values (every source's) are looked for in many strings (every record's): each value is
indexed by one token of it, so a string is tokenised once and only the values whose token
it holds are matched in full.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from phiscrub.pipeline.probe import UID, Needle, shape

MIN_NAME_PART = 6  # a source file or folder name (its stem) shorter than this is not looked for
# audit fields whose values are phiscrub's own words or numbers, never a source's
VOCABULARY_FIELDS = frozenset({
    "event", "status", "category", "verification", "version", "iod", "profile", "options", "options_recorded",
    "actions", "phi", "kind", "mode", "transfer_syntax", "sop_class", "format", "channel",
})
_HEXES = re.compile(r"(?<![0-9a-z])[0-9a-f]{16,}(?![0-9a-z])")
_B64 = re.compile(r"data:[a-z/+]+;base64,[a-z0-9+/=]+")
_HTML_NOISE = re.compile(r"<style.*?</style>|<script.*?</script>|<[^>]+>", re.S)
_ALPHA = re.compile(r"[^\W\d_]+")
_DIGIT_RUNS = re.compile(r"\d+")
_UID_RUNS = re.compile(r"[0-9][0-9.]*[0-9]")
_ALNUM = re.compile(r"[^\W_]+")


def _key(n: Needle) -> tuple[str, str]:
    """(token class, token) by which a value is indexed: the value itself for a word, a
    number or a UID; its longest run of letters and digits otherwise."""
    if n.kind == UID:
        return "uid", n.text
    sh = shape(n.text)
    if sh == "alpha":
        return "alpha", n.text
    if sh == "digits":
        return "digits", max(_DIGIT_RUNS.findall(n.text) or [n.text], key=len)
    return "alnum", max(_ALNUM.findall(n.text) or [n.text], key=len)


class NeedleIndex:
    """Source values, looked up by token: a string's tokens are found in a dict, and only
    the values indexed under one of them are matched with their own rule."""

    def __init__(self, needles: Iterable[Needle]) -> None:
        self.by: dict[tuple[str, str], list[Needle]] = {}
        for n in needles:
            self.by.setdefault(_key(n), []).append(n)
        self.classes = {c for c, _ in self.by}

    def __bool__(self) -> bool:
        return bool(self.by)

    def find(self, low: str) -> Needle | None:
        """The first value that ``low`` (folded text) holds, or None."""
        if not self.by:
            return None
        for cls, pattern in (("alpha", _ALPHA), ("digits", _DIGIT_RUNS), ("uid", _UID_RUNS), ("alnum", _ALNUM)):
            if cls not in self.classes:
                continue
            for tok in set(pattern.findall(low)):
                for n in self.by.get((cls, tok), ()):
                    if n.in_text(low):
                        return n
        return None


def _stem(name: str) -> str:
    return name.split(".", 1)[0] if not name.startswith(".") else name


class SourceNames:
    """The job's source file and folder names, to be found as names (see the module)."""

    def __init__(self, rels: Iterable[str]) -> None:
        self.whole: set[str] = set()  # folded components and their stems
        tokens: set[str] = set()
        for rel in rels:
            for part in PurePosixPath(rel).parts:
                low, stem = part.lower(), _stem(part).lower()
                if len(stem) < MIN_NAME_PART:
                    continue
                self.whole |= {low, stem}
                tokens |= {t for t in (low, stem) if not t.isalpha()}
        self.tokens = sorted(tokens)
        self._re = (re.compile("|".join(rf"(?<![a-z0-9_.]){re.escape(t)}(?![a-z0-9_])" for t in self.tokens))
                    if self.tokens else None)

    def __bool__(self) -> bool:
        return bool(self.whole)

    def in_path(self, low: str) -> bool:
        """A path (or a stored value, which may be one): a component, or its stem, equal to
        a source name; or a name that cannot be a word, anywhere in it."""
        for part in re.split(r"[/\\]", low):
            if part and (part in self.whole or (" " not in part and _stem(part) in self.whole)):
                return True
        return self.in_text(low)

    def in_text(self, low: str) -> bool:
        return self._re is not None and self._re.search(low) is not None


def _strings(value: object, key: str = "") -> Iterator[str]:
    """The string values of a JSON document (not its keys, numbers or vocabulary fields)."""
    if key in VOCABULARY_FIELDS:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, str(k))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, key)


def _holds(strings: Iterable[str], needles: NeedleIndex, names: SourceNames) -> bool:
    for s in strings:
        low = _HEXES.sub(" ", s.lower())
        if needles.find(low) is not None or (names and names.in_path(low)):
            return True
    return False


def state_file_holds(path: Path, data: bytes, needles: NeedleIndex, names: SourceNames) -> bool:
    """Whether one file of a state folder holds a source value or a source name, read by
    what it is: JSON by its values, SQLite by its rows, a page by its text."""
    name = path.name
    if name.endswith((".sqlite", ".db")):
        return _holds(_rows(path), needles, names)
    if name.endswith(("-wal", "-shm", "-journal")):
        return False  # SQLite's own pages: their rows are read through the database
    text = data.decode("utf-8", "replace")
    if name.endswith(".jsonl"):
        return _holds(_json_lines(text), needles, names)
    if name.endswith(".json"):
        try:
            return _holds(_strings(json.loads(text)), needles, names)
        except ValueError:
            pass  # not JSON after all: scanned as text
    if name.endswith((".html", ".htm")):
        text = _HTML_NOISE.sub(" ", _B64.sub(" ", text.lower()))
    low = _HEXES.sub(" ", text.lower())
    return needles.find(low) is not None or (bool(names) and names.in_text(low))


def _json_lines(text: str) -> Iterator[str]:
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            yield from _strings(json.loads(line))
        except ValueError:
            yield line  # a line that is not a record: its text as it is


def _rows(path: Path) -> Iterator[str]:
    """Every text value of every table, read-only."""
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            cols = [r[1] for r in con.execute(f'PRAGMA table_info("{t}")')]
            for row in con.execute(f'SELECT * FROM "{t}"'):
                for col, v in zip(cols, row, strict=False):
                    if isinstance(v, str) and col not in VOCABULARY_FIELDS:
                        yield v
    except sqlite3.Error:
        return
    finally:
        con.close()

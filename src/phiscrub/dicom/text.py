"""PHI in free text: find the identifying values of an instance (or of its whole study) and
generic patterns.

Used by clean_descriptors, clean_structured_content and the clean_text override. Only the
matched spans are replaced with a marker; every other word (the medical content) stays.

Four sources of spans, merged:

- the terms (:class:`PhiTerms`): names, IDs, places and dates read from headers. They are
  matched token by token, case and accents ignored, so a value is found whatever the
  punctuation between its parts ("Davidson^Douglas", "Douglas DAVIDSON", "Davidson, D.",
  "2023-04-15", "15/04/2023", "15th April 2023"). The terms are compiled once per distinct set
  (see :func:`_matcher_for`), because the cleaner runs on every text attribute of every
  instance and a study's merged set is shared by all its instances;
- :data:`GENERIC`: what identifies whoever it belongs to (any date, e-mail, phone, MRN-like);
- identifier-shaped tokens (letters and digits mixed, 6+ characters, 3+ digits), less the
  measurements and technique words of ``policy/data/text_keep_tokens.yaml``;
- the configuration's own patterns.
"""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
]
_MON = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Generic patterns: what identifies whoever it belongs to.
_PATTERNS = [
    # dates: 2021-03-04, 04/03/2021, 4.3.21, 20210304 (8 digits caught by digit runs too)
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
    # 4 March 2021, 4th Mar, 21, 04-Mar-2021, 04MAR2021, March 4, 2021, Mar 4 21, 2021-Mar-04
    rf"\b\d{{1,2}}(?:st|nd|rd|th)?[\s./-]*{_MON},?[\s./-]*\d{{2,4}}\b",
    rf"\b{_MON}[\s./-]*\d{{1,2}}(?:st|nd|rd|th)?,?[\s./-]+\d{{2,4}}\b",
    rf"\b\d{{4}}[\s./-]*{_MON}[\s./-]*\d{{1,2}}\b",
    # e-mail
    r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b",
    # phone numbers: +1 (555) 123-4567, 555-123-4567, 0171 234 5678
    r"(?:\+\d{1,3}[\s.-]?)?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}\b",
    # MRN-like: MRN 1234, ID: AB12345, #12345
    r"\b(?:mrn|id|acc|accession|pid|ssn)\s*[:#]?\s*[A-Za-z0-9-]*\d[A-Za-z0-9-]*\b",
    r"\b[A-Za-z]{1,4}[-#]?\d{5,}\b",
    # long digit runs (5 or more), with optional separators inside
    r"\b\d[\d-]{3,}\d\b",
    # US SSN
    r"\b\d{3}-\d{2}-\d{4}\b",
]
GENERIC = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE)

# Tokens of the term matcher: runs of letters or of digits, so that "MRN4471923" is the
# tokens "mrn" "4471923" whichever way the text writes it, and "uch" is never found in "much".
_TOKEN = re.compile(r"[^\W\d_]+|\d+")
_ORDINALS = frozenset({"st", "nd", "rd", "th"})
_END = ""  # a trie key no token can be: a value ends at this node
_MAX_GAP = 3  # at most this many characters of punctuation or space between a value's tokens
# What the identifier-shape rule reads as one token (see text_keep_tokens.yaml).
_ID_TOKEN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]+(?:(?:-|(?<=\d)\.(?=\d))[A-Za-z0-9]+)*")
_MAY_BE_GENERIC = re.compile(r"[\d@]")
_THREE_DIGITS = re.compile(r"\d[^\d]*\d[^\d]*\d")
_MEMO_TEXT, _MEMO_SIZE = 1024, 8192
_PATTERN_MEMO: dict[tuple[str, tuple[re.Pattern[str], ...]], list[tuple[int, int]]] = {}
_PART_NUMBER = re.compile(r"\d{1,4}(?:\.\d+)?")
# Letters NFKD does not decompose, and the German spellings of umlauts that records also use.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d",
                       "þ": "th", "ı": "i", "’": "'"})
_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})


@functools.lru_cache(maxsize=4096)
def date_variants(da: str) -> frozenset[str]:
    """A DA value written the ways people write dates. Cached: a study repeats its dates in
    every instance and every sequence, and each call formats some eighty strings."""
    try:
        d = _dt.date(int(da[0:4]), int(da[4:6]), int(da[6:8]))
    except (ValueError, IndexError):
        return frozenset()
    y, m, dd = d.year, d.month, d.day
    mon = MONTHS[m - 1]
    out = {
        f"{y:04d}{m:02d}{dd:02d}", f"{y:04d}-{m:02d}-{dd:02d}", f"{y:04d}/{m:02d}/{dd:02d}",
        f"{y:04d}.{m:02d}.{dd:02d}",
    }
    for yy in (f"{y:04d}", f"{y % 100:02d}"):
        for sep in "/-.":
            out |= {f"{m:02d}{sep}{dd:02d}{sep}{yy}", f"{dd:02d}{sep}{m:02d}{sep}{yy}",
                    f"{m}{sep}{dd}{sep}{yy}", f"{dd}{sep}{m}{sep}{yy}"}
    names = {mon, mon[:3]} | ({"sept"} if m == 9 else set())
    for mn in names:
        out |= {f"{dd} {mn} {y}", f"{mn} {dd}, {y}", f"{mn} {dd} {y}", f"{dd}-{mn}-{y}",
                f"{dd:02d} {mn} {y}", f"{dd}{mn}{y}", f"{y} {mn} {dd}", f"{y}-{mn}-{dd:02d}",
                f"{dd} {mn} {y % 100:02d}", f"{mn} {dd} {y % 100:02d}"}
    return frozenset(v.lower() for v in out)


_STAMPS = itertools.count(1)


class _TrackedSet(set[str]):
    """A set that records each change with a fresh stamp, so that the compiled matcher of a
    :class:`PhiTerms` knows in O(1) whether it is still valid: callers (the annotation
    cleaner, the OCR matcher) add to ``terms.words`` and ``terms.literals`` directly."""

    __slots__ = ("stamp",)

    def __init__(self, values: Iterable[str] = ()) -> None:
        super().__init__(values)
        self.stamp = next(_STAMPS)

    def _touch(self) -> None:
        self.stamp = next(_STAMPS)

    def add(self, value: str) -> None:
        super().add(value)
        self._touch()

    def discard(self, value: str) -> None:
        super().discard(value)
        self._touch()

    def remove(self, value: str) -> None:
        super().remove(value)
        self._touch()

    def pop(self) -> str:
        self._touch()
        return super().pop()

    def clear(self) -> None:
        super().clear()
        self._touch()

    def update(self, *others: Iterable[Any]) -> None:
        super().update(*others)
        self._touch()

    def difference_update(self, *others: Iterable[Any]) -> None:
        super().difference_update(*others)
        self._touch()

    def intersection_update(self, *others: Iterable[Any]) -> None:
        super().intersection_update(*others)
        self._touch()

    def symmetric_difference_update(self, other: Iterable[Any]) -> None:
        super().symmetric_difference_update(other)
        self._touch()

    def __ior__(self, other: Any) -> _TrackedSet:  # type: ignore[override]
        super().__ior__(other)
        self._touch()
        return self

    def __iand__(self, other: Any) -> _TrackedSet:  # type: ignore[override]
        super().__iand__(other)
        self._touch()
        return self

    def __isub__(self, other: Any) -> _TrackedSet:  # type: ignore[override]
        super().__isub__(other)
        self._touch()
        return self

    def __ixor__(self, other: Any) -> _TrackedSet:  # type: ignore[override]
        super().__ixor__(other)
        self._touch()
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_TrackedSet, (list(self),))


_SET_FIELDS = ("words", "literals", "names")


@dataclass
class PhiTerms:
    """Identifying values of one instance, or of every instance of a study and patient
    merged, in the forms free text tends to hold them.

    ``names`` holds the parts of person names (also in ``words``): a name part is removed
    from text even when it is a common word (text_common_words.txt), because a patient
    named White is identified by "White". Terms built with ``words`` and ``literals`` only
    still work; their words are then all treated as non-name words.
    """

    words: set[str] = field(default_factory=set)  # name parts and words of values, lower case
    literals: set[str] = field(default_factory=set)  # IDs, dates, phones, addresses
    names: set[str] = field(default_factory=set)  # parts of person names, lower case

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SET_FIELDS and not isinstance(value, _TrackedSet):
            value = _TrackedSet(value)
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        # counts only: a repr ends up in logs and tracebacks, the values are PHI
        return (f"PhiTerms(words={len(self.words)}, literals={len(self.literals)}, "
                f"names={len(self.names)})")

    def __getstate__(self) -> dict[str, set[str]]:
        # plain sets, no compiled matcher: what workers receive stays small and portable
        return {k: set(getattr(self, k)) for k in _SET_FIELDS}

    def __setstate__(self, state: dict[str, set[str]]) -> None:
        for k in _SET_FIELDS:
            setattr(self, k, state.get(k, set()))

    def add_name(self, pn: str) -> None:
        for part in re.split(r"[\^=,\s]+", pn):
            p = part.strip().strip(".").lower()
            if len(p) >= 2:
                self.words.add(p)
                if _fold(p) not in _word_lists()[1]:
                    self.names.add(p)

    def add_literal(self, value: str) -> None:
        v = value.strip().lower()
        if len(v) >= 3:
            self.literals.add(v)
            digits = re.sub(r"\D", "", v)
            if len(digits) >= 5 and digits != v:
                self.literals.add(digits)
        for part in re.split(r"[\s,;^]+", v):
            if len(part) >= 4 and not part.isdigit():
                self.words.add(part)

    def add_date(self, da: str) -> None:
        self.literals |= date_variants(da.strip()[:8])

    def all_values(self) -> set[str]:
        return self.words | self.literals

    # ------------------------------------------------------------------ merging

    def update(self, other: PhiTerms) -> None:
        """Adds ``other``'s values in place: the cheap way to build a study's set."""
        self.words |= other.words
        self.literals |= other.literals
        self.names |= other.names

    def merge(self, other: PhiTerms) -> PhiTerms:
        """A new set holding both: what collecting both instances would have given.
        Neither input changes, so a set already sent to a worker is never altered."""
        return PhiTerms(words=self.words | other.words, literals=self.literals | other.literals,
                        names=self.names | other.names)

    __or__ = merge

    @classmethod
    def combine(cls, parts: Iterable[PhiTerms | None]) -> PhiTerms:
        """One set from many (``None`` parts skipped), in one pass."""
        out = cls()
        words: set[str] = set()
        literals: set[str] = set()
        names: set[str] = set()
        for p in parts:
            if p is not None:
                words |= p.words
                literals |= p.literals
                names |= p.names
        out.words, out.literals, out.names = words, literals, names
        return out

    def canonical(self) -> tuple[str, ...]:
        """Every value, tagged with its kind and sorted: equal sets give equal tuples in
        any process and order of collection, so a keyed digest of it tells whether a
        study's values changed between runs."""
        return tuple(sorted(
            [f"w:{v}" for v in self.words] + [f"l:{v}" for v in self.literals]
            + [f"n:{v}" for v in self.names]
        ))


# ---------------------------------------------------------------------- data files


def _data(name: str) -> str:
    return resources.files("phiscrub.policy.data").joinpath(name).read_text(encoding="utf-8")


@cache
def _word_lists() -> tuple[frozenset[str], frozenset[str]]:
    """(common words, name affixes) of text_common_words.yaml, folded; affixes are common too."""
    import yaml

    spec = yaml.safe_load(_data("text_common_words.yaml"))
    lists = []
    for key in ("common_words", "name_affixes"):
        values = spec.get(key)
        if not isinstance(values, list) or not values:
            raise ValueError(f"text_common_words.yaml: {key!r} must be a non-empty list")
        lists.append(frozenset(_fold(str(v).strip()) for v in values if str(v).strip()))
    return lists[0] | lists[1], lists[1]


def _common_words() -> frozenset[str]:
    return _word_lists()[0]


@cache
def keep_tokens() -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The keep-list: one compiled pattern (whole-token match) and the listed examples."""
    import yaml

    spec = yaml.safe_load(_data("text_keep_tokens.yaml"))
    for key in ("units", "prefixes", "patterns"):
        if not isinstance(spec.get(key), list) or not spec[key]:
            raise ValueError(f"text_keep_tokens.yaml: {key!r} must be a non-empty list")

    def alt(words: list[str]) -> str:
        return "(?:" + "|".join(re.escape(str(w)) for w in sorted(words, key=len, reverse=True)) + ")"

    subs = {"{number}": r"\d{1,5}(?:\.\d+)?", "{unit}": alt(spec["units"]), "{prefix}": alt(spec["prefixes"])}
    pats = []
    for p in spec["patterns"]:
        p = str(p)
        for k, v in subs.items():
            p = p.replace(k, v)
        try:
            re.compile(p)
        except re.error as exc:
            raise ValueError(f"text_keep_tokens.yaml: bad pattern {p!r}: {exc}") from exc
        pats.append(f"(?:{p})")
    return re.compile("|".join(pats), re.IGNORECASE), tuple(str(e) for e in spec.get("examples") or ())


# ---------------------------------------------------------------------- tokens


def _fold(s: str) -> str:
    """Lower case, accents and ligatures folded: José = jose, MÜLLER = muller."""
    s = s.lower()
    if s.isascii():
        return s
    s = s.translate(_FOLD)
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _forms(s: str) -> set[str]:
    """The folded spellings of a term: also ü as ue, as German records write it."""
    low = s.lower()
    out = {_fold(low)}
    if any(c in low for c in "äöü"):
        out.add(_fold(low.translate(_UMLAUTS)))
    return out


def _tokens(text: str) -> list[tuple[str, int, int]]:
    """(folded token, start, end); an ordinal suffix stays with its number (14th = 14)."""
    out: list[tuple[str, int, int]] = []
    for m in _TOKEN.finditer(text):
        s, e = m.span()
        tok = m.group(0)
        if out and out[-1][2] == s and tok.lower() in _ORDINALS and out[-1][0].isdigit():
            out[-1] = (out[-1][0], out[-1][1], e)
            continue
        out.append((_fold(tok), s, e))
    return out


def _deletions(w: str) -> Iterator[str]:
    for i in range(len(w)):
        yield w[:i] + w[i + 1:]


class _Matcher:
    """A set of terms compiled for free text: a trie of multi-token values, single
    tokens, and a deletion index for one-typo matches of words."""

    def __init__(self, words: frozenset[str], literals: frozenset[str], names: frozenset[str]) -> None:
        common = _common_words()
        name_forms: set[str] = set()
        for n in names:
            for f in _forms(n):
                name_forms |= {t for t, _, _ in _tokens(f)} | {f}
        self.trie: dict[str, Any] = {}  # token -> subtree; _END marks a whole value
        self.singles: set[str] = set()  # exact tokens: never typo-matched
        self.words: set[str] = set()  # name-like words: exact or one typo
        self.fuzzy: dict[str, set[str]] = {}

        def keep(tok: str) -> bool:
            return not tok.isalpha() or tok not in common or tok in name_forms

        def add_value(value: str, as_word: bool) -> None:
            for form in _forms(value):
                toks = tuple(t for t, _, _ in _tokens(form))
                if not toks:
                    continue
                if len(toks) == 1:
                    if keep(toks[0]):
                        (self.words if as_word and toks[0].isalpha() else self.singles).add(toks[0])
                    continue
                if not all(t.isalpha() and t in common and t not in name_forms for t in toks):
                    node = self.trie
                    for t in toks:
                        node = node.setdefault(t, {})
                    node[_END] = True
                if as_word:
                    joined = "".join(toks)  # o'brien -> obrien, smith-jones -> smithjones
                    if joined.isalpha():
                        self.words.add(joined)
                    for t in toks:  # smith-jones -> smith, jones
                        if t.isalpha() and len(t) >= 3 and keep(t):
                            self.words.add(t)
                for t in toks:  # a 5+ digit run of an ID is identifying alone
                    if t.isdigit() and len(t) >= 5:
                        self.singles.add(t)

        for lit in literals:
            add_value(lit, as_word=False)
            for seg in re.split(r"[,;^]+", lit):  # "42 wallaby way, sydney": each part too
                if seg.strip() and seg.strip() != lit:
                    add_value(seg.strip(), as_word=False)
        for w in words | names:
            add_value(w, as_word=True)
        for w in self.words:
            if len(w) >= 5:
                self.fuzzy.setdefault(w, set()).add(w)
                for d in _deletions(w):
                    self.fuzzy.setdefault(d, set()).add(w)
        self.initials = frozenset(w[0] for w in self.words if w[:1].isalpha())
        self.common = common
        self.memo: dict[str, list[tuple[int, int]]] = {}
        self.typo_memo: dict[str, bool] = {}  # text words seen: most repeat

    def _typo(self, tok: str) -> bool:
        if len(tok) < 5 or tok in self.common or not tok.isalpha():
            return False
        hit = self.typo_memo.get(tok)
        if hit is None:
            fuzzy = self.fuzzy
            hit = any(_near(tok, c) for c in fuzzy.get(tok, ())) or any(
                _near(tok, c) for d in _deletions(tok) for c in fuzzy.get(d, ()))
            if len(self.typo_memo) >= _MEMO_SIZE:
                self.typo_memo.clear()
            self.typo_memo[tok] = hit
        return hit

    def spans(self, text: str) -> list[tuple[int, int]]:
        hit = self.memo.get(text)
        if hit is not None:
            return hit
        out = self._spans(text)
        _memo_put(self.memo, text, text, out)
        return out

    def _spans(self, text: str) -> list[tuple[int, int]]:
        toks = _tokens(text)
        out: list[tuple[int, int]] = []
        n = len(toks)
        for i, (tok, s, e) in enumerate(toks):
            node = self.trie.get(tok)
            if node is not None:  # the longest value whose tokens start here
                end, j = -1, i + 1
                while j < n and toks[j][1] - toks[j - 1][2] <= _MAX_GAP:
                    node = node.get(toks[j][0])
                    if node is None:
                        break
                    if _END in node:
                        end = toks[j][2]
                    j += 1
                if end >= 0:
                    out.append((s, end))
            if tok in self.singles:
                out.append((s, e))
            elif tok in self.words or (self.fuzzy and self._typo(tok)):
                out.append(self._with_initials(text, toks, i))
        return out

    def _with_initials(self, text: str, toks: list[tuple[str, int, int]], i: int) -> tuple[int, int]:
        """A name's span widened over the initials written beside it: "D. E. Davidson",
        "Davidson, D.E." (single capitals that start a known name part, up to three)."""
        s, e = toks[i][1], toks[i][2]

        def initial(j: int) -> bool:
            raw = text[toks[j][1]:toks[j][2]]
            return len(raw) == 1 and raw.isupper() and toks[j][0] in self.initials

        j = i - 1
        while j >= 0 and i - j <= 3 and initial(j) and _initial_gap(text[toks[j][2]:s]):
            s = toks[j][1]
            j -= 1
        j = i + 1
        while j < len(toks) and j - i <= 3 and initial(j) and _initial_gap(text[e:toks[j][1]]):
            e = toks[j][2]
            j += 1
        if e > toks[i][2] and text[e:e + 1] == ".":
            e += 1
        return s, e


def _initial_gap(gap: str) -> bool:
    return 0 < len(gap) <= 3 and all(c in ". ," for c in gap)


_LRU: OrderedDict[tuple[frozenset[str], frozenset[str], frozenset[str]], _Matcher] = OrderedDict()
_LRU_SIZE = 32


def _matcher_for(terms: PhiTerms) -> _Matcher:
    """The compiled matcher of ``terms``: kept on the object while its sets are unchanged,
    and shared by equal sets (each worker's unpickled copy of one study's set compiles once)."""
    stamp = (terms.words.stamp, terms.literals.stamp, terms.names.stamp)  # type: ignore[attr-defined]
    cached = terms.__dict__.get("_cache")
    if cached is not None and cached[0] == stamp:
        return cached[1]
    key = (frozenset(terms.words), frozenset(terms.literals), frozenset(terms.names))
    m = _LRU.get(key)
    if m is None:
        m = _Matcher(*key)
        _LRU[key] = m
        while len(_LRU) > _LRU_SIZE:
            _LRU.popitem(last=False)
    else:
        _LRU.move_to_end(key)
    object.__setattr__(terms, "_cache", (stamp, m))
    return m


# ---------------------------------------------------------------------- spans


def _near(a: str, b: str) -> bool:
    """Edit distance of at most 1 (one typo), for words of five letters or more."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def identifier_shaped(token: str) -> bool:
    """Letters and digits mixed, at least 6 of them, at least 3 digits: the shape of device
    serials, MRNs and requisition codes."""
    digits = sum(map(str.isdigit, token))
    letters = sum(map(str.isalpha, token))
    return digits >= 3 and letters >= 1 and digits + letters >= 6


def kept_token(token: str) -> bool:
    """Whether an identifier-shaped token is a measurement or technique word to keep."""
    keep, _ = keep_tokens()
    if keep.fullmatch(token):
        return True
    if "-" not in token:
        return False
    return all(p.isalpha() or _PART_NUMBER.fullmatch(p) or keep.fullmatch(p) for p in token.split("-"))


def _identifier_spans(text: str) -> list[tuple[int, int]]:
    out = []
    for m in _ID_TOKEN.finditer(text):
        tok = m.group(0)
        if len(tok) >= 6 and identifier_shaped(tok) and not kept_token(tok):
            out.append(m.span())
    return out


def _memo_put(memo: dict[Any, list[tuple[int, int]]], key: Any, text: str,
              spans: list[tuple[int, int]]) -> None:
    # Descriptions repeat across the instances of a series: remember short ones (in memory
    # only, never written anywhere), and start afresh rather than grow without bound.
    if len(text) <= _MEMO_TEXT:
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        memo[key] = spans


def _pattern_spans(text: str, extra: tuple[re.Pattern[str], ...]) -> list[tuple[int, int]]:
    """The spans that do not depend on the terms: generic, configured, identifier-shaped."""
    key = (text, extra)
    hit = _PATTERN_MEMO.get(key)
    if hit is not None:
        return hit
    spans: list[tuple[int, int]] = []
    if _MAY_BE_GENERIC.search(text):  # every generic pattern needs a digit or an @
        spans.extend(m.span() for m in GENERIC.finditer(text))
    for pat in extra:
        spans.extend(m.span() for m in pat.finditer(text))
    if _THREE_DIGITS.search(text):
        spans.extend(_identifier_spans(text))
    _memo_put(_PATTERN_MEMO, key, text, spans)
    return spans


def find_spans(
    text: str, terms: PhiTerms, extra: Iterable[re.Pattern[str]] = ()
) -> list[tuple[int, int]]:
    spans = list(_pattern_spans(text, tuple(extra)))
    if terms.words or terms.literals or terms.names:
        spans.extend(_matcher_for(terms).spans(text))
    return _merge(spans)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def clean_text(
    text: str, terms: PhiTerms, marker: str, extra: Iterable[re.Pattern[str]] = ()
) -> tuple[str, int]:
    """Returns the cleaned text and the number of spans replaced (identifier-shaped tokens
    included)."""
    spans = find_spans(text, terms, extra)
    if not spans:
        return text, 0
    parts, last = [], 0
    for s, e in spans:
        parts.append(text[last:s])
        parts.append(marker)
        last = e
    parts.append(text[last:])
    return "".join(parts), len(spans)

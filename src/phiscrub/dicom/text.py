"""PHI in free text: find the instance's own identifying values and generic patterns.

Used by clean_descriptors, clean_structured_content and the clean_text override. Only the
matched spans are replaced with a marker; every other word (the medical content) stays.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august",
    "september", "october", "november", "december",
]
# Generic patterns: what identifies whoever it belongs to.
_PATTERNS = [
    # dates: 2021-03-04, 04/03/2021, 4.3.21, 20210304 (8 digits caught by digit runs too)
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
    # 4 March 2021, March 4, 2021, Mar 4 21
    r"\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?\s+\d{2,4}\b",
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{2,4}\b",
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
_WORD = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F'\-]*")


def date_variants(da: str) -> set[str]:
    """A DA value written the ways people write dates."""
    try:
        d = _dt.date(int(da[0:4]), int(da[4:6]), int(da[6:8]))
    except (ValueError, IndexError):
        return set()
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
    for mn in (mon, mon[:3]):
        out |= {f"{dd} {mn} {y}", f"{mn} {dd}, {y}", f"{mn} {dd} {y}", f"{dd}-{mn}-{y}",
                f"{dd:02d} {mn} {y}", f"{dd}{mn}{y}"}
    return {v.lower() for v in out}


@dataclass
class PhiTerms:
    """Identifying values of one instance, in the forms free text tends to hold them."""

    words: set[str] = field(default_factory=set)  # name parts, lower case
    literals: set[str] = field(default_factory=set)  # IDs, dates, phones, addresses

    def add_name(self, pn: str) -> None:
        for part in re.split(r"[\^=,\s]+", pn):
            p = part.strip().strip(".").lower()
            if len(p) >= 2:
                self.words.add(p)

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


def find_spans(
    text: str, terms: PhiTerms, extra: Iterable[re.Pattern[str]] = ()
) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    low = text.lower()
    for lit in terms.literals:
        start = low.find(lit)
        while start != -1:
            spans.append((start, start + len(lit)))
            start = low.find(lit, start + 1)
    for m in GENERIC.finditer(text):
        spans.append(m.span())
    for pat in extra:
        for m in pat.finditer(text):
            spans.append(m.span())
    if terms.words:
        for m in _WORD.finditer(text):
            w = m.group(0).lower().strip("'-")
            if w in terms.words or any(_near(w, t) for t in terms.words if len(t) >= 5):
                spans.append(m.span())
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
    """Returns the cleaned text and the number of spans replaced."""
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

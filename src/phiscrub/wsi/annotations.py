"""Annotation files beside slides: Aperio ImageScope XML, Hamamatsu .ndpa, QuPath GeoJSON
and ASAP XML. (DICOM bulk annotations go through the DICOM header path instead.)

One entry for detection (:func:`sniff_annotation`, by content) and one for the work
(:func:`scrub_annotation`): authors, owners, timestamps and file paths go; names, titles
and comments are cleaned with the same free-text cleaner as DICOM; geometry, classes and
measurements are left as the exact strings the file held. The field lists are data
(policy/data/wsi/annotations.yaml), the format walkers are in annotations_xml.py and
annotations_geojson.py.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phiscrub.dicom.text import PhiTerms, clean_text
from phiscrub.errors import UnsupportedInput
from phiscrub.keys import KeyRing
from phiscrub.policy.config import Config

KINDS = ("aperio_xml", "ndpa", "geojson", "asap_xml")
MAX_BYTES = 256 << 20  # a quarter GiB of annotations is already absurd; refuse instead of parsing
_SNIFF_BYTES = 64 << 10
_ROOT = re.compile(rb"<\s*([A-Za-z_][\w.\-]*)")
_SKIP = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.S)


@cache
def field_lists() -> dict[str, Any]:
    text = resources.files("phiscrub.policy.data").joinpath("wsi/annotations.yaml").read_text()
    return yaml.safe_load(text)


def remove_names() -> frozenset[str]:
    return frozenset(n.lower() for n in field_lists()["remove_names"])


@dataclass
class Cleaner:
    """Free-text cleaning with what the file itself tells: values removed from the file
    (an author's name, a timestamp) are looked for in every free-text field after them,
    and the generic patterns (dates, IDs, e-mails, phones) and the config's own patterns
    apply everywhere."""

    marker: str
    extra: tuple = ()
    terms: PhiTerms = field(default_factory=PhiTerms)
    counts: Counter = field(default_factory=Counter)
    mode: str = "clean"  # wsi.annotation_text
    vocabulary: frozenset[str] = frozenset()

    def learn(self, value: str) -> None:
        value = value.strip()
        if value:
            self.terms.add_name(value)
            self.terms.add_literal(value)

    def clean(self, where: str, value: str) -> str:
        if self.mode == "remove":
            out, n = (self.marker, 1) if value.strip() else (value, 0)
        else:
            out, n = clean_text(value, self.terms, self.marker, self.extra)
            if self.mode == "vocabulary":
                out, unknown = _vocabulary_only(out, self.vocabulary, self.marker)
                n += unknown
        self.counts[f"cleaned:{where}"] += 1
        if n:
            self.counts[f"spans:{where}"] += n
        return out

    def removed(self, where: str) -> None:
        self.counts[f"removed:{where}"] += 1

    def manifest(self, kind: str, **extra: int) -> dict:
        """Field names from the schema, actions and counts; never a value."""
        removed = {k.split(":", 1)[1]: n for k, n in sorted(self.counts.items()) if k.startswith("removed:")}
        cleaned = {k.split(":", 1)[1]: n for k, n in sorted(self.counts.items()) if k.startswith("cleaned:")}
        spans = sum(n for k, n in self.counts.items() if k.startswith("spans:"))
        return {"format": kind, "removed": removed, "cleaned": cleaned, "spans_replaced": spans, **extra}


_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


@cache
def _builtin_vocabulary() -> frozenset[str]:
    from phiscrub.pixels.phi_match import DEFAULT_ALLOW

    text = resources.files("phiscrub.policy.data").joinpath("wsi/annotation_vocabulary.txt").read_text(encoding="utf-8")
    return frozenset(_words(text)) | {w.lower() for w in DEFAULT_ALLOW}


def _words(text: str) -> list[str]:
    return [w.lower() for line in text.splitlines() if not line.lstrip().startswith("#") for w in line.split()]


def vocabulary(files: tuple[str, ...] = ()) -> frozenset[str]:
    """The words annotation free text may keep: the bundled list plus the user's files."""
    extra = [w for f in files for w in _words(Path(f).read_text(encoding="utf-8"))]
    return _builtin_vocabulary() | frozenset(extra)


def _vocabulary_only(text: str, vocab: frozenset[str], marker: str) -> tuple[str, int]:
    """Every word not in ``vocab`` replaced by the marker (a run of them by one marker);
    numbers, units and punctuation stay, as do markers already written."""
    unknown = 0
    own = {w.lower() for w in _WORD.findall(marker)}

    def swap(m: re.Match[str]) -> str:
        nonlocal unknown
        word = m.group(0)
        if len(word) == 1 or word.lower() in vocab or word.lower() in own:  # a lone letter: H&E, L, R
            return word
        unknown += 1
        return "\0"

    out = _WORD.sub(swap, text)
    if not unknown:
        return text, 0
    out = re.sub(r"\0(?:[\s,;]*\0)*", marker, out)
    return out, unknown


def sniff_annotation(path: Path) -> str | None:
    """The annotation format of ``path`` from its first bytes, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return None
    return sniff_bytes(head)


def sniff_bytes(head: bytes) -> str | None:
    head = _text_head(head)
    if head is None:
        return None
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        if re.search(rb'"type"\s*:\s*"(Feature|FeatureCollection)"', stripped):
            return "geojson"
        return None
    pos = 0
    while True:  # skip the declaration, comments and a doctype before the root element
        m = _SKIP.match(stripped, pos)
        if not m:
            break
        pos = m.end()
    while stripped[pos:pos + 1].isspace():
        pos += 1
    m = _ROOT.match(stripped, pos) if stripped[pos:pos + 1] == b"<" else None
    if m is None:
        return None
    root = m.group(1)
    if root == b"Annotations" and b"<Annotation" in stripped[m.end():]:
        return "aperio_xml"
    if root == b"annotations" and b"<ndpviewstate" in stripped:
        return "ndpa"
    if root == b"ASAP_Annotations":
        return "asap_xml"
    return None


def _text_head(head: bytes) -> bytes | None:
    """The head as ASCII-compatible bytes (UTF-16 files are transcoded), or None for binary."""
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return head.decode("utf-16", "ignore").encode("utf-8", "replace")
        except UnicodeError:
            return None
    if b"\x00" in head[:1024]:
        return None
    return head


def scrub_annotation(
    data: bytes, kind: str, keys: KeyRing, config: Config, *, terms: PhiTerms | None = None
) -> tuple[bytes, dict]:
    """De-identified bytes of one annotation file and a PHI-free manifest.

    ``terms``: identifying values known from elsewhere (the slide's patient name, barcode,
    accession): the file alone cannot tell that a title's words are a patient's name, only
    that they match a removed author, a date, an ID or an e-mail. ``keys`` is part of the
    interface so that a policy can later ask for keyed replacements instead of removal;
    removal and cleaning need no key. Raises UnsupportedInput for an unknown kind or an
    absurd size and CorruptFile for a file that does not parse as its kind.
    """
    del keys  # nothing keyed is written today: authors and timestamps are removed
    if kind not in KINDS:
        raise UnsupportedInput(f"annotation: unknown kind {kind!r}; known: {list(KINDS)}")
    if len(data) > MAX_BYTES:
        raise UnsupportedInput("annotation: file larger than the 256 MiB limit")
    cleaner = Cleaner(config.policy.text_marker, tuple(config.text_patterns), mode=config.wsi.annotation_text,
                      vocabulary=vocabulary(config.wsi.annotation_vocabulary))
    if terms is not None:
        cleaner.terms.words |= terms.words
        cleaner.terms.literals |= terms.literals
    if kind == "geojson":
        from phiscrub.wsi.annotations_geojson import scrub_geojson

        return scrub_geojson(data, cleaner)
    from phiscrub.wsi.annotations_xml import scrub_xml

    return scrub_xml(data, kind, cleaner)

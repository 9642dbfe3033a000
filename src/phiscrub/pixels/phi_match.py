"""Which recognised text is sensitive: this instance's own values, read with OCR errors.

OCR misreads (DAVIDSON^DOUGLAS comes back as DAVIDSONDOUGLAS, 0 as O, a caret as a
quote), so exact string search against the header would miss burned-in PHI. Names and
identifiers are compared with a normalised similarity (rapidfuzz's partial ratio, an
InDel edit distance over the best-aligned substring) and a length guard so that a short
fragment cannot stand in for a long name. Generic patterns (dates, clock times, long
digit runs, MRN-like codes, e-mail, phone numbers) catch what the header does not hold.

The allow-list exists for the opposite error: device labels such as 'DR 60' (dynamic
range) would otherwise match a physician recorded as 'Dr Smith'. A box whose words are
all allow-listed and whose numbers are all short is kept.

Nothing here logs or returns recognised text: the boxes carry a PHI-free reason only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from phiscrub.dicom.text import GENERIC, MONTHS, PhiTerms, date_variants
from phiscrub.pixels.boxes import Box, TextBox
from phiscrub.pixels.truncated import KnownValues, missing_ends

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

DEFAULT_THRESHOLD = 0.8
UNREADABLE = "unreadable"  # the reason of a box sensitive mode blanks because it could not read it
MODES = ("all", "sensitive", "none")

# Text that is never PHI on its own: orientation, views, units, device settings, and the
# words of frame counters. Matched case-insensitively against every word of a box.
DEFAULT_ALLOW: tuple[str, ...] = (
    # orientation and views
    "L", "R", "A", "P", "H", "F", "S", "I", "AP", "PA", "LAT", "LATERAL", "LL", "RL", "LR", "RLAT", "LLAT", "OBL",
    "LAO", "RAO", "LPO", "RPO", "SUP", "INF", "ANT", "POST", "LEFT", "RIGHT", "UPRIGHT", "SUPINE", "PRONE", "ERECT",
    "AXIAL", "SAG", "COR", "TRANS", "LONG", "MED", "PROX", "DIST", "CC", "MLO", "ML", "LM", "XCCL",
    # units
    "MHz", "kHz", "Hz", "cm", "mm", "m", "dB", "bpm", "fps", "s", "ms", "sec", "min", "kV", "kVp", "mA", "mAs",
    "mGy", "cGy", "Gy", "cm/s", "mm/s", "m/s", "x",
    # ultrasound and modality settings
    "HR", "FR", "DR", "THI", "PW", "CW", "CF", "CFM", "PD", "PRF", "WF", "SV", "Gain", "Gn", "Depth", "Freq", "Frq",
    "Res", "Gen", "Pen", "MI", "TIS", "TIB", "TIC", "TI", "Zoom", "Map", "Persist", "Dyn", "Pwr", "Power", "Focus",
    "Angle", "Scale", "Filter", "Vel", "Flow", "Low", "High", "Mid", "Harm", "Comp", "Rej", "Sector", "Line",
    "2D", "M", "C", "D", "B", "G", "WL", "WW", "W", "FOV", "DFOV", "ST", "SL", "TR", "TE", "TA", "NEX", "ETL",
    # frame counters
    "Fr", "Frame", "Frames", "Im", "Img", "Image", "Se", "Ser", "Series", "Slice", "No", "of",
)

# A time of day as burned into a clock corner: 10:15, 10:15:32, 10:15:32.25, 10:15 pm.
TIME = re.compile(r"(?<![\d:])(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?:[.,]\d+)?(?:\s*[ap]\.?m\.?)?(?![\d:])", re.IGNORECASE)
# Honorifics and suffixes that PN values carry but that are not identifying on their own.
_NAME_NOISE = {"dr", "md", "mr", "mrs", "ms", "miss", "jr", "sr", "ii", "iii", "iv", "phd", "prof", "rn", "do", "dds"}
_CONFUSABLE = str.maketrans({"o": "0", "i": "1", "l": "1", "|": "1", "!": "1", "z": "2", "s": "5", "b": "8", "g": "9"})
_TOKEN = re.compile(r"[a-z\u00c0-\u024f]+|\d+(?:[.,]\d+)?|[^\sa-z\u00c0-\u024f\d]", re.IGNORECASE)
_LETTERS = re.compile(r"[a-z\u00c0-\u024f]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_DATE_SHAPES = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_AGE_STRING = re.compile(r"(\d{3})([DWMY])", re.IGNORECASE)  # DICOM AS
_AGE_CAPTIONED = re.compile(r"(?<![a-z])age(?![a-z])\W{0,3}0*(\d{1,3})\s*(y|yo|yrs?|years?|m|mo|months?|w|wks?|weeks?|d|days?)?(?![a-z\d])")
_AGE_WITH_UNIT = re.compile(r"(?<![\d.,])0*(\d{1,3})\s*(?:y|yo|yrs?|years?(?:\s*old)?)(?![a-z\d])")
_MONTH = re.compile(r"(?<![a-z])(?:" + "|".join(m[:3] for m in MONTHS) + r")[a-z]*(?![a-z])")

# Header attributes whose values burned-in text repeats, beyond what collect_terms takes.
NAME_KEYWORDS = (
    "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "ReferringPhysicianName",
    "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "PhysiciansOfRecord", "RequestingPhysician",
    "OperatorsName", "ScheduledPerformingPhysicianName", "ResponsiblePerson", "PersonName",
)
PLACE_KEYWORDS = (
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "StationName",
    "ReferringPhysicianAddress", "PatientAddress", "RequestingService",
)
ID_KEYWORDS = (
    "PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID", "MedicalRecordLocator",
    "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers", "DeviceSerialNumber", "AdmissionID",
    "RequestedProcedureID", "ScheduledProcedureStepID", "PerformedProcedureStepID", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)
DATE_KEYWORDS = (
    "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate",
    "PerformedProcedureStepStartDate", "AdmittingDate",
)
DATETIME_KEYWORDS = ("AcquisitionDateTime", "FrameReferenceDateTime")
TIME_KEYWORDS = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "PatientBirthTime", "InstanceCreationTime")


# ----------------------------------------------------------------------------- terms


def terms_from_header(ds: Dataset) -> PhiTerms:
    """Identifying values of one instance from its ORIGINAL header (call before cleaning).

    Starts from :func:`phiscrub.dicom.identity.collect_terms` (every person name and every
    Annex E identifying attribute, sequences included) and makes sure the values burned-in
    text most often repeats are there whatever the profile: people's names, institution
    and station, IDs and accession number, every date in its written forms, and clock
    times as hh:mm:ss and hh:mm.
    """
    from phiscrub.dicom.identity import collect_terms

    terms = collect_terms(ds)
    for kw in NAME_KEYWORDS:
        for v in _values(ds, kw):
            terms.add_name(v)
    for kw in PLACE_KEYWORDS + ID_KEYWORDS:
        for v in _values(ds, kw):
            terms.add_literal(v)
    for kw in DATE_KEYWORDS:
        for v in _values(ds, kw):
            terms.add_date(v)
    for kw in DATETIME_KEYWORDS:
        for v in _values(ds, kw):
            terms.add_date(v[:8])
            terms.literals |= _time_forms(v[8:])
    for kw in TIME_KEYWORDS:
        for v in _values(ds, kw):
            terms.literals |= _time_forms(v)
    for v in _values(ds, "PatientAge"):  # Annex E removes it; burned in, it reads "Age: 76"
        if _AGE_STRING.fullmatch(v.strip()):
            terms.literals.add(v.strip().upper())
    terms.words -= _NAME_NOISE
    return terms


def _values(ds: Dataset, keyword: str) -> list[str]:
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed element must not stop the pixel stage
        return []
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [str(v).strip() for v in items if v not in (None, "") and str(v).strip()]


def _time_forms(tm: str) -> set[str]:
    """A TM value as clocks show it: 10:15:32 and 10:15 (seconds vary across frames)."""
    digits = re.sub(r"\D", "", tm.split(".")[0])
    if len(digits) < 4:
        return set()
    hh, mm, ss = digits[0:2], digits[2:4], digits[4:6]
    if not (hh.isdigit() and int(hh) < 24 and int(mm) < 60):
        return set()
    out = {f"{hh}:{mm}"}
    if len(ss) == 2:
        out.add(f"{hh}:{mm}:{ss}")
    return out


# ----------------------------------------------------------------------------- classify


def classify(
    boxes: list[TextBox],
    terms: PhiTerms | None,
    mode: str,
    threshold: float = DEFAULT_THRESHOLD,
    allow: Sequence[str] | None = None,
    patterns: Sequence[re.Pattern[str]] = (),
    unreadable_below: float = 0.0,
) -> list[Box]:
    """Boxes to blank, each with a PHI-free reason; frame None (applies to every frame).

    mode 'all': every text box ('all-text'). 'none': nothing. 'sensitive': only boxes whose
    text matches this instance's values ('phi-name', 'phi-id', 'phi-date'), a user regex
    ('user-pattern') or a generic pattern ('pattern'); allow-listed text is kept. With no
    terms to look for, 'sensitive' cannot tell PHI from labels and falls back to 'all'.
    ``threshold`` (0..1] is the similarity a fuzzy match needs; 1.0 means exact only.
    ``allow`` None means :data:`DEFAULT_ALLOW`. 'sensitive' fails closed: a box (or strip)
    that matches nothing but was read as two or more characters with a score under
    ``unreadable_below`` goes as 'unreadable', since a misreading cannot show that it is
    harmless (the caller keeps only those whose pixels look like text).
    """
    mode = (mode or "").strip().lower()
    if mode not in MODES:
        raise ValueError(f"text redaction mode must be one of {MODES}, not {mode!r}")
    if mode == "none":
        return []
    if mode == "sensitive" and (terms is None or not (terms.words or terms.literals)):
        mode = "all"
    if mode == "all":
        return [Box(b.x, b.y, b.w, b.h, None, "all-text") for b in boxes]
    assert terms is not None
    matcher = PhiMatcher(terms, threshold, DEFAULT_ALLOW if allow is None else allow, patterns)
    values = known_values(terms)
    out = []
    def doubtful(t: TextBox) -> bool:
        # two characters at least: the detector's boxes on anatomy come back as one
        # stray letter or nothing, and blanking those would chase the edges of our own
        # fills round after round (JSL tune CT slices)
        return t.score < unreadable_below and sum(c.isalnum() for c in t.text) >= 2

    for b in boxes:
        # a box read as strips: the strips that match go; when none does alone (a value
        # split over two strips), the whole box does
        parts = [widened(p, r, values) for p in b.lines if (r := matcher.reason(p.text))]
        reason = None if parts else matcher.reason(b.text)
        if parts:
            out += parts + [Box(p.x, p.y, p.w, p.h, None, UNREADABLE) for p in b.lines
                            if doubtful(p) and not matcher.reason(p.text)]
        elif reason:
            out.append(widened(b, reason, values))
        elif b.lines:
            out += [Box(p.x, p.y, p.w, p.h, None, UNREADABLE) for p in b.lines if doubtful(p)]
        elif doubtful(b):
            out.append(Box(b.x, b.y, b.w, b.h, None, UNREADABLE))
    return out


def known_values(terms: PhiTerms | None) -> KnownValues:
    """The values a reading may stop short of (see :mod:`phiscrub.pixels.truncated`), prepared
    once for every line of the instance."""
    return KnownValues((terms.literals | terms.words) if terms is not None else ())


def widened(t: TextBox, reason: str, values: Iterable[str] | KnownValues) -> Box:
    """The box to blank for text ``t`` matched as ``reason``: wider by the characters of a
    value it stops short of (see :mod:`phiscrub.pixels.truncated`), at the width per
    character of its own reading."""
    before, after = missing_ends(t.text, values)
    if not (before or after):
        return Box(t.x, t.y, t.w, t.h, None, reason)
    per_char = t.w / max(1, len(t.text.strip()))
    x0 = max(0, math.floor(t.x - before * per_char))
    x1 = math.ceil(t.x + t.w + after * per_char)
    return Box(x0, t.y, x1 - x0, t.h, None, reason)


class PhiMatcher:
    """The terms of one instance, prepared once for matching many lines of OCR text."""

    def __init__(
        self,
        terms: PhiTerms,
        threshold: float = DEFAULT_THRESHOLD,
        allow: Iterable[str] = DEFAULT_ALLOW,
        patterns: Sequence[re.Pattern[str]] = (),
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be in (0, 1]")
        self.cutoff = threshold * 100.0
        self.threshold = threshold
        self.allow = {a.strip().lower() for a in allow if a.strip()}
        self.patterns = list(patterns)
        names: set[str] = set()
        others: set[str] = set()
        for w in terms.words:
            if any(c.isdigit() for c in w):
                others.add(_alnum(w))  # a code such as MRN4471923 that add_literal kept as a word
                continue
            parts = _LETTERS.findall(w.lower())  # o'brien -> obrien, smith-jones -> smith, jones, smithjones
            names |= {p for p in parts if len(p) >= 2}
            names.add("".join(parts))
        self.names = sorted(n for n in names - _NAME_NOISE if len(n) >= 2)
        self.other_words = sorted(o for o in others if len(o) >= 3)
        lits: dict[str, str] = {}
        for lit in terms.literals:
            key = _alnum(lit)
            if len(key) >= 3:
                lits[key] = "phi-date" if lits.get(key) == "phi-date" else _literal_kind(lit)
        self.literals = lits
        # Separator-bearing forms too, for short literals that only match with their shape
        # (3/4/52 is '3452' once reduced to letters and digits).
        self.shaped = {lit: _literal_kind(lit) for lit in terms.literals if len(_alnum(lit)) < 6}
        # the patient's age, from an Age String literal (076Y): matched only beside an "age"
        # caption or with its unit ("76 y", "76yo", "76 years"), never as a bare number
        self.ages = {(int(m.group(1)), m.group(2).lower()) for lit in terms.literals
                     if (m := _AGE_STRING.fullmatch(lit.strip()))}

    def reason(self, text: str) -> str | None:
        """The PHI-free reason this text is sensitive, or None to keep it."""
        raw = " ".join((text or "").split())
        if not raw:
            return None
        for p in self.patterns:
            if p.search(raw):
                return "user-pattern"
        low = raw.lower()
        hit = self._literal(low) or self._name(low, exact=True)
        if hit:
            return hit
        if self.ages and self._age(low):
            return "phi-age"
        if self._allowed(low):
            return None
        if self._name(low, exact=False):
            return "phi-name"
        digitised = _digitise(low)
        if GENERIC.search(raw) or TIME.search(raw) or (digitised != low and (GENERIC.search(digitised) or TIME.search(digitised))):
            return "pattern"
        return None

    def _age(self, low: str) -> bool:
        """The patient's age, after an "age" caption or with its unit (years only for a
        bare unit: "3 m" could be anything)."""
        for m in _AGE_CAPTIONED.finditer(low):
            unit = (m.group(2) or "y")[0]
            if (int(m.group(1)), unit) in self.ages:
                return True
        return any((int(m.group(1)), "y") in self.ages for m in _AGE_WITH_UNIT.finditer(low))

    def _allowed(self, low: str) -> bool:
        """Only allow-listed words and short numbers (no date, time or ID among them)."""
        if TIME.search(low) or GENERIC.search(low) or _DATE_SHAPES.search(low):
            return False
        for tok in _TOKEN.findall(low):
            if tok[0].isdigit():
                if len(re.sub(r"\D", "", tok)) > 4:
                    return False
            elif tok[0].isalpha():
                if tok not in self.allow:
                    return False
        return True

    def _literal(self, low: str) -> str | None:
        from rapidfuzz import fuzz

        flat = _alnum(low)
        if not flat:
            return None
        variants = {flat, _alnum(_digitise(low))}
        tokens = set(_alnum_tokens(low)) | set(_alnum_tokens(_digitise(low)))
        for lit, kind in self.shaped.items():
            if _bounded_find(low, lit):
                return kind
        for key, kind in self.literals.items():
            if len(key) < 6:
                if key in tokens or key in variants:
                    return kind
                continue
            for v in variants:
                if key in v:
                    return kind
                if self.threshold < 1.0 and len(v) >= math.ceil(self.threshold * len(key)):
                    if fuzz.partial_ratio(key, v, score_cutoff=self.cutoff):
                        return kind
        for w in self.other_words:
            if w in flat or (self.threshold < 1.0 and len(w) >= 5 and fuzz.partial_ratio(w, flat, score_cutoff=self.cutoff)
                             and len(flat) >= math.ceil(self.threshold * len(w))):
                return "phi-id"
        return None

    def _name(self, low: str, exact: bool) -> str | None:
        """Exact: a name part of 4+ letters anywhere in the line's letters (OCR drops the
        caret and spaces between parts), or a shorter one as a whole word that is not an
        allow-listed label. Fuzzy: 5+ letter parts within the similarity threshold."""
        from rapidfuzz import fuzz

        words = _LETTERS.findall(low)
        if not words or not self.names:
            return None
        if exact:
            glued = "".join(words)
            token_set = {w for w in words if w not in self.allow}
            for name in self.names:
                if name in token_set or (len(name) >= 4 and name in glued):
                    return "phi-name"
            return None
        if self.threshold >= 1.0:
            return None
        glued = "".join(w for w in words if w not in self.allow)
        for name in self.names:
            if (len(name) >= 5 and len(glued) >= math.ceil(self.threshold * len(name))
                    and fuzz.partial_ratio(name, glued, score_cutoff=self.cutoff)):
                return "phi-name"
        return None


def _alnum(s: str) -> str:
    return re.sub(r"[^0-9a-z\u00c0-\u024f]", "", s.lower())


def _alnum_tokens(s: str) -> list[str]:
    return re.findall(r"[0-9a-z\u00c0-\u024f]+", s.lower())


def _digitise(low: str) -> str:
    """OCR's letter-for-digit confusions (O/0, l/1, S/5, B/8) undone inside tokens that are
    mostly digits already, so '0З/14/l952' style misreads still look like a date."""
    out = []
    for tok in re.split(r"(\s+)", low):
        digits = sum(c.isdigit() for c in tok)
        letters = sum(c.isalpha() for c in tok)
        out.append(tok.translate(_CONFUSABLE) if digits and digits >= letters else tok)
    return "".join(out)


def _bounded_find(hay: str, needle: str) -> bool:
    """needle occurs in hay not glued to further letters or digits on either side."""
    start = hay.find(needle)
    while start != -1:
        end = start + len(needle)
        before = hay[start - 1] if start > 0 else " "
        after = hay[end] if end < len(hay) else " "
        if not before.isalnum() and not after.isalnum():
            return True
        start = hay.find(needle, start + 1)
    return False


def _literal_kind(lit: str) -> str:
    """Reason for a literal: a date or time, a name (of a place: letters only), or an ID."""
    if _is_date(lit):
        return "phi-date"
    return "phi-id" if any(c.isdigit() for c in lit) else "phi-name"


def _is_date(lit: str) -> bool:
    """Whether a literal from PhiTerms is one of the written forms of a date or a time."""
    s = lit.strip().lower()
    if _DATE_SHAPES.fullmatch(s) or TIME.fullmatch(s):
        return True
    if _MONTH.search(s) and re.search(r"\d", s):
        return True
    if re.fullmatch(r"\d{8}", s):
        return bool(date_variants(s))
    return False

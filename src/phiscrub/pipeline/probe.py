"""The source's identifying values, as the verifier chooses them: by VR and by module.

The probe does not ask the policy what is identifying: a value the policy forgot would be
forgotten here too, and the verifier would pass what the transform leaked. It takes every
name (PN), date and time (DA, DT, TM), instance UID, ID (an LO/SH attribute whose keyword
ends in ID, Number, Identifier, ...) and the text of the patient, study, series and
equipment modules, at any depth, private elements included (data/verify_probe.yaml).

The policy is asked one thing only: what it keeps on purpose. A value is excused when an
attribute that holds it stays in the output by an explicit choice (an option such as
retain_device_identity, an override, the keep_all profile), not when the policy merely
did not list it. Descriptions, which may be ordinary words, are also excused where the
source holds the same word in any attribute that stays (a series description 'CHEST'
beside a body part 'CHEST'). Each value is then matched as a token of its own shape, so
that 'mary' is not found in 'primary', nor an ID '12345' inside a longer number or UID,
and a date only as a whole date.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from importlib import resources

import yaml
from pydicom.charset import decode_bytes, encode_string
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary

from phiscrub.dicom.un_vr import dictionary_vr
from phiscrub.dicom.values import DUMMY
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.profile import Policy

DATA_FILE = "verify_probe.yaml"
NAME, ID, TEXT, DESCRIPTION, UID, DATE, TIME = "name", "ID", "identifying text", "description", "UID", "date", "time"
STRICT_KINDS = frozenset({NAME, ID, TEXT, UID})  # identify by themselves: looked for in the state folder too
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})
_CODED_VRS = frozenset({"CS", "IS", "DS", "AS"})  # kept codes and numbers: words and numbers, never PHI by design
_ALL_STRING_VRS = _TEXT_VRS | _CODED_VRS | {"PN", "DA", "DT", "TM", "UI", "AE", "UR"}
_KEEPS = (Action.KEEP, Action.CLEAN, Action.CLEAN_TEXT)
_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_DEFAULT_CHARSETS = ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192")
_LETTER = re.compile(r"[^\W\d_]")
_IDEOGRAPHIC = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]")  # CJK, kana, hangul
_DIGIT = re.compile(r"\d")
_ALNUM = re.compile(r"[^\W_]")
_TRAILING_ESCAPE = re.compile(rb"\x1b[\x20-\x2f]+[\x40-\x7e]$")
_LINE_BREAKS = str.maketrans("\r\n\t", "   ")


@dataclass(frozen=True)
class Spec:
    """data/verify_probe.yaml, checked once: a keyword unknown to the dictionary fails here."""

    min_length: int
    min_digits: int
    min_state_length: int
    min_state_digits: int
    min_ideographic: int
    stop: frozenset[str]
    stop_dates: frozenset[str]
    id_suffix: re.Pattern[str]
    not_identifying: frozenset[int]
    identifying: frozenset[int]
    descriptive: frozenset[int]
    code_text: frozenset[int]
    class_uid: re.Pattern[str]
    not_patient_dates: frozenset[int]


@cache
def spec() -> Spec:
    text = resources.files("phiscrub.policy.data").joinpath(DATA_FILE).read_text()
    return parse_spec(yaml.safe_load(text))


def parse_spec(doc: dict) -> Spec:
    def tags(key: str) -> frozenset[int]:
        out = set()
        for kw in doc.get(key) or ():
            tag = tag_for_keyword(str(kw))
            if tag is None:
                raise ValueError(f"{DATA_FILE}: {key}: {kw} is not a keyword of the DICOM dictionary")
            out.add(tag)
        return frozenset(out)

    suffixes = [re.escape(str(s)) for s in doc.get("id_suffixes") or ()]
    if not suffixes:
        raise ValueError(f"{DATA_FILE}: id_suffixes: give at least one keyword ending")
    ints = {}
    for key, default in (("min_length", 4), ("min_digits", 5), ("min_state_length", 5), ("min_state_digits", 6),
                         ("min_ideographic", 2)):
        value = doc.get(key, default)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{DATA_FILE}: {key}: a positive whole number")
        ints[key] = value
    for i, d in enumerate(doc.get("stop_dates") or ()):
        if not re.fullmatch(r"\d{8}", str(d)):
            raise ValueError(f"{DATA_FILE}: stop_dates[{i}]: YYYYMMDD")
    return Spec(
        **ints,
        stop=frozenset(str(s).strip().lower() for s in doc.get("stop_list") or ()),
        stop_dates=frozenset(str(d) for d in doc.get("stop_dates") or ()),
        id_suffix=re.compile(f"(?:{'|'.join(suffixes)})$"),
        not_identifying=tags("not_identifying"),
        identifying=tags("identifying_text"),
        descriptive=tags("descriptive_text"),
        code_text=tags("code_text"),
        class_uid=re.compile(str(doc.get("class_uid_keywords") or r"ClassUID$")),
        not_patient_dates=tags("not_patient_dates"),
    )


# --- matching a value as a token of its shape ------------------------------------------

def shape(text: str) -> str:
    """'digits', 'alpha', 'ideographic' or 'mixed': how a value is told from the text around
    it. Words of a script without spaces between them (CJK) have no edges to look for."""
    if _LETTER.search(text) is None:
        return "digits"
    if _IDEOGRAPHIC.search(text):
        return "ideographic"
    return "alpha" if text.isalpha() else "mixed"


def _edges(kind: str, text: str, as_bytes: bool) -> tuple[str, str]:
    """The lookarounds that make a value a whole token: a name part not inside a longer
    word, a number not inside a longer number, a decimal or a UID."""
    if kind == UID:
        return r"(?<![0-9.])", r"(?![0-9.])"
    sh = shape(text)
    if sh == "digits":
        return r"(?<![0-9])(?<![0-9]\.)", r"(?![0-9])(?!\.[0-9])"
    if sh == "alpha":
        letters = r"a-z\x80-\xff" if as_bytes else r"^\W\d_"
        return rf"(?<![{letters}])", rf"(?![{letters}])"
    return "", ""  # letters with digits or punctuation: specific enough anywhere


# a compact date may go on as a DT (time of day, fraction, offset), never as a longer number
_DT_TAIL = r"(?:[0-2]\d(?:[0-5]\d(?:[0-6]\d(?:\.\d{1,6})?)?)?)?(?:[+-]\d{4})?"


@dataclass(frozen=True)
class Needle:
    """One identifying value of the source: its folded text, what kind it is, and the byte
    forms it takes in a header (UTF-8, Latin-1, the source's own character set)."""

    text: str
    kind: str
    forms: tuple[bytes, ...]

    @property
    def strict(self) -> bool:
        return self.kind in STRICT_KINDS

    @cached_property
    def _bytes_re(self) -> re.Pattern[bytes]:
        return _needle_re(self, True)

    @cached_property
    def _texts(self) -> tuple[str, ...]:
        return (self.text, *(_written_dates(self.text) if self.kind == DATE else ()))

    @cached_property
    def _text_re(self) -> re.Pattern[str]:
        return _needle_re(self, False)

    def _pattern(self, form: bytes | str, as_bytes: bool):
        text = form.decode("latin-1") if isinstance(form, bytes) else form
        if self.kind == DATE and text.isdigit():
            pre, post = r"(?<![0-9])(?<![0-9]\.)", _DT_TAIL + r"(?![0-9])(?!\.[0-9])"
        elif self.kind == TIME:
            pre, post = r"(?<![0-9])(?<![0-9]\.)", r"(?:\.\d{1,6})?(?![0-9])(?!\.[0-9])"
        else:
            pre, post = _edges(self.kind, text if self.kind != DATE else "0", as_bytes)
        if as_bytes:
            return pre.encode() + re.escape(form) + post.encode()
        return pre + re.escape(text) + post

    def in_bytes(self, hay: bytes) -> bool:
        """``hay`` folded to lower case."""
        return any(f in hay for f in self.forms) and self._bytes_re.search(hay) is not None

    def in_text(self, hay: str) -> bool:
        """``hay`` folded to lower case."""
        return any(t in hay for t in self._texts) and self._text_re.search(hay) is not None


@lru_cache(maxsize=8192)
def _needle_re(n: Needle, as_bytes: bool) -> re.Pattern:
    """A needle's pattern, built once per value and kind: the instances of a study probe the
    same names and dates, each as a needle of its own (equal needles share the pattern)."""
    if as_bytes:
        return re.compile(b"|".join(n._pattern(f, True) for f in n.forms))
    return re.compile("|".join(n._pattern(t, False) for t in n._texts))


def _written_dates(d: str) -> list[str]:
    """The forms a date takes when a person writes it into text."""
    y, m, dd = d[:4], d[4:6], d[6:8]
    return [f"{y}-{m}-{dd}", f"{y}/{m}/{dd}", f"{m}/{dd}/{y}", f"{dd}/{m}/{y}", f"{dd}.{m}.{y}"]


# --- the probe --------------------------------------------------------------------------

Position = tuple  # (tag, item index, tag, item index, ..., tag): where a value sits


@dataclass
class Probe:
    """What the verifier looks for in one output.

    ``values``/``texts``: every needle's byte forms and texts (a byte scan needs only
    these); ``needles``: the same with their kind; ``dates_at``/``times_at``: the source's
    dates and times by position, so that a date the transform shifted onto another of the
    source's dates (its offset equal to the gap between them) is not taken for a leak,
    while a date left where it was, or written where the source had none, is one.
    ``own``: words phiscrub itself writes into every output (its stamp, its dummies and
    marker), blanked before a scan so that a value equal to one of them is not 'found'.
    """

    values: frozenset[bytes]
    texts: frozenset[str] = frozenset()
    needles: tuple[Needle, ...] = ()
    dates_at: dict[Position, frozenset[str]] = field(default_factory=dict)
    times_at: dict[Position, frozenset[str]] = field(default_factory=dict)
    dates: frozenset[str] = frozenset()
    times: frozenset[str] = frozenset()
    own: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not self.needles and self.values:  # made from byte values alone (tests, callers of old)
            self.needles = tuple(Needle(v.decode("latin-1"), TEXT, (v,)) for v in sorted(self.values))
        if not self.texts:
            self.texts = frozenset(n.text for n in self.needles)

    def state_needles(self) -> list[Needle]:
        """The values worth looking for in the job's own files: identifying ones, long enough
        not to turn up by chance among hashes and counts."""
        s = spec()
        out = []
        for n in self.needles:
            if not n.strict:
                continue
            alnum = sum(c.isalnum() for c in n.text)
            need = s.min_state_digits if shape(n.text) == "digits" else s.min_state_length
            if alnum >= need:
                out.append(n)
        return out


def collect_probe(src: Dataset, policy: Policy, iod: str | None, *, also: Iterable[str] = ()) -> Probe:
    """``also``: identifying values known from elsewhere (the study's other instances),
    looked for as names."""
    c = _Collector(src, policy, iod)
    c.walk(src, (), False, True)
    for v in also:
        c.add(NAME, str(v))
    return c.probe()


def own_words(policy: Policy) -> tuple[bytes, ...]:
    """The words phiscrub writes into every output whatever the source held (its stamp,
    dummies and marker), longest first; those of fewer than four characters or without a
    letter are left alone (blanking '0' would blank every number)."""
    cached = policy._cache.get("verify-own-words")
    if cached is not None:
        return cached
    from phiscrub.dicom.deid_attrs import stamp

    ds = Dataset()
    stamp(ds, policy, "0" * 64)
    words = {policy.text_marker, *DUMMY.values(), "phiscrub"}
    for elem in ds.iterall():
        if elem.VR in _ALL_STRING_VRS and elem.value not in (None, ""):
            vals = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
            words.update(str(v).split(" sha256:")[0] for v in vals)
    keep = {w.lower() for w in words if len(w) >= 4 and any(c.isalpha() for c in w)}
    out = tuple(sorted((w.encode("utf-8") for w in keep), key=len, reverse=True))
    policy._cache["verify-own-words"] = out
    return out


@dataclass
class _Candidate:
    kind: str
    text: str  # as written in the source (case kept for its byte forms)


class _Collector:
    def __init__(self, src: Dataset, policy: Policy, iod: str | None) -> None:
        self.policy, self.iod, self.spec = policy, iod, spec()
        self.table: dict[tuple, tuple[bool, bool, bool]] = policy._cache.setdefault(("verify-probe", iod), {})
        self.charsets = _charsets(src)
        self.codecs = _python_codecs(self.charsets)
        self.candidates: dict[tuple[str, str], _Candidate] = {}
        self.deliberate: set[str] = set()  # values the policy keeps on purpose, whole (and a name's parts)
        self.coded: list[bytes] = []  # kept codes and numbers (CS, IS, DS, AS, a code sequence's text)
        self.other: list[bytes] = []  # kept values of attributes the probe does not collect (Manufacturer)
        self.kept: list[bytes] = []  # every value that stays in the output, kept for any reason
        self.dates_at: dict[Position, set[str]] = {}
        self.times_at: dict[Position, set[str]] = {}
        self.uid_kept: set[str] = set()  # class-kind and registered UIDs
        full = policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES) or policy.profile == "keep_all"
        self.look_for_dates = not full
        self.look_for_times = not full and not policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES)
        self.retain_uids = policy.has(Option.RETAIN_UIDS) or policy.profile == "keep_all"

    def add(self, kind: str, text: str) -> None:
        text = text.strip(" \x00")
        if text:
            self.candidates.setdefault((kind, text.lower()), _Candidate(kind, text))

    def walk(self, ds: Dataset, path: Position, nested: bool, parent_kept: bool) -> None:
        """Raw elements, decoded here: the probe must cost little beside the transform."""
        creators: dict[int, str] = {}
        table = self.table
        for btag, raw in list(ds._dict.items()):
            tag = int(btag)
            group, elem = tag >> 16, tag & 0xFFFF
            private = bool(group & 1)
            creator = None
            vr = _vr(raw, tag)
            if private:
                if 0x10 <= elem <= 0xFF:
                    creators[(group << 8) | elem] = (self._strings(raw.value, "LO") or [""])[0]
                    continue  # a creator names a vendor's block, not anyone
                creator = creators.get((group << 8) | (elem >> 8))
            elif group == 0x0002 or elem == 0:
                continue  # file meta and group lengths: the writer's own
            key = (tag, vr, nested, creator)
            verdict = table.get(key)
            if verdict is None:
                verdict = table[key] = self._verdict(tag, vr, nested, creator, private)
            kept_here, on_purpose, collects = verdict
            if vr == "SQ":  # its items stay unless it goes or is emptied; each element then by its own rule
                here = (*path, tag)
                for i, item in enumerate(_items(ds, btag, raw)):
                    self.walk(item, (*here, i), True, parent_kept and kept_here)
                continue
            stays = parent_kept and kept_here
            if not stays and not collects:
                continue  # neither collected nor kept: nothing to read
            vals: list[str] | None = None
            collected = False
            if collects:
                vals = self._strings(raw.value, vr or "UN")
                collected = bool(vals) and self._classify(tag, vr, private, vals, (*path, tag))
            if stays and vr == "PN":  # a name excuses nothing but the same name, kept on purpose
                if on_purpose:
                    parts = [p for v in vals or () for p in re.split(r"[\^=]", v)]
                    self._deliberate(vr, [*(vals or ()), *(p.strip() for p in parts if p.strip())])
                continue
            if not stays:
                continue
            # what stays is kept as bytes, undecoded: it only excuses, and is searched as bytes
            blob = _as_bytes(raw.value, vals)
            self.kept.append(blob)
            if vr in _CODED_VRS or tag in self.spec.code_text:
                self.coded.append(blob)
            elif not collected:
                self.other.append(blob)
            if on_purpose:
                self._deliberate(vr, vals if vals is not None else self._strings(raw.value, vr or "UN"))

    def _verdict(self, tag: int, vr: str | None, nested: bool, creator: str | None, private: bool
                 ) -> tuple[bool, bool, bool]:
        """(stays, kept on purpose, collected) for an element of this kind in this context:
        the same for every instance of a policy and IOD, so worked out once."""
        rule = self.policy.resolve(tag, vr, self.iod, nested, creator)
        if vr == "SQ":
            return rule.action not in (Action.REMOVE, Action.EMPTY), False, False
        if vr not in _ALL_STRING_VRS and not (private and vr in (None, "UN")):
            return False, False, False  # binary values: nothing to read as text
        stays = rule.action in _KEEPS and not (vr in ("DA", "DT") and rule.action != Action.KEEP)
        on_purpose = stays and rule.action == Action.KEEP and not rule.source.startswith("default")
        collects = private or vr in _ALWAYS or _standard_kind(tag) is not None
        return stays, on_purpose, collects

    def _deliberate(self, vr: str | None, vals: list[str]) -> None:
        """A value kept on purpose excuses that very value (and a name's parts, a date's day)."""
        self.deliberate.update(v.lower() for v in vals)
        if vr in ("DA", "DT"):
            self.deliberate.update(m.group(0) for v in vals if (m := _DATE.match(v.strip())))
        elif vr == "TM":
            self.deliberate.update(t for v in vals if (t := time_of(v)))

    def _classify(self, tag: int, vr: str | None, private: bool, vals: list[str], pos: Position) -> bool:
        """Takes what the element holds that identifies; False when it holds nothing the
        probe collects."""
        s = self.spec
        if vr == "PN":
            for v in vals:
                self.add(NAME, v)
                for part in re.split(r"[\^=]", v):
                    self.add(NAME, part)
                    words = part.split()
                    if len(words) > 1:
                        for w in words:
                            self.add(NAME, w)
        elif vr in ("DA", "DT"):
            if not self.look_for_dates or tag in s.not_patient_dates:
                return True
            days = {m.group(0) for v in vals if (m := _DATE.match(v.strip())) and _plausible(m)}
            self.dates_at.setdefault(pos, set()).update(days)
            if vr == "DT" and self.look_for_times:
                self.times_at.setdefault(pos, set()).update(t for v in vals if (t := time_of(v.strip()[8:])))
        elif vr == "TM":
            if self.look_for_times and tag not in s.not_patient_dates:
                self.times_at.setdefault(pos, set()).update(t for v in vals if (t := time_of(v)))
        elif vr == "UI":
            cls = not private and _standard_kind(tag) == _CLASS
            for v in vals:
                if cls or v in UID_dictionary:
                    self.uid_kept.add(v)
                else:
                    self.add(UID, v)
        elif private:
            if vr in _TEXT_VRS or vr in (None, "UN"):
                for v in vals:
                    self.add(DESCRIPTION, v)
        elif vr in _TEXT_VRS or vr in ("AE", "UR"):
            kind = _standard_kind(tag)
            if kind is None:
                return False
            for v in vals:
                self.add(kind, v)
        else:
            return False
        return True

    def _strings(self, value: object, vr: str) -> list[str]:
        """A value as its strings, decoded in the source's character set."""
        if isinstance(value, (bytes, bytearray)):
            raw = bytes(value)
            if self.codecs:
                try:
                    text = decode_bytes(raw, self.codecs, {0x5C, 0x3D, 0x5E} if vr == "PN" else {0x5C})
                except Exception:  # noqa: BLE001 - undecodable: read as Latin-1 below
                    text = raw.decode("latin-1")
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("latin-1")
            vals: list = text.split("\\") if vr not in ("LT", "ST", "UT", "UR") else [text]
        else:
            vals = list(value) if isinstance(value, (list, MultiValue)) else [value]
        out = []
        for v in vals:
            s = str(v).strip(" \x00") if v is not None else ""
            if s and (s.isprintable() or s.translate(_LINE_BREAKS).isprintable()):
                out.append(s)
        return out

    # -- from candidates to needles
    def probe(self) -> Probe:
        s = self.spec
        deliberate = self.deliberate
        coded = b"\x00".join(self.coded).lower()
        other = b"\x00".join(self.other).lower()
        kept = b"\x00".join(self.kept).lower()
        needles: list[Needle] = []
        for (kind, low), cand in self.candidates.items():
            if not self._meaningful(low, kind) or (kind == UID and (low in self.uid_kept or self.retain_uids)):
                continue
            if low in deliberate:
                continue  # the policy keeps that very value on purpose (not a value inside it: a
                # comment kept by an override still may not name the patient)
            n = Needle(low, kind, self._forms(cand.text))
            if (kind == DESCRIPTION or shape(low) == "digits") and n.in_bytes(kept):
                continue  # an ordinary word, or a count or measurement, that stays in another attribute
            if kind != UID and n.in_bytes(coded):
                continue  # a code the output keeps (a body part, an image type, a code meaning)
            if kind == TEXT and n.in_bytes(other):
                continue  # also in an attribute that identifies no one and stays (a manufacturer)
            needles.append(n)
        dates = set().union(*self.dates_at.values()) if self.dates_at else set()
        dates = {d for d in dates if d not in s.stop_dates and d not in deliberate}
        for d in sorted(dates):
            needles.append(Needle(d, DATE, tuple(f.encode() for f in (d, *_written_dates(d)))))
        times = set().union(*self.times_at.values()) if self.times_at else set()
        times = {t for t in times if t not in deliberate}
        for t in sorted(times):  # found in bytes only to know that the fields must be read
            needles.append(Needle(t, TIME, (t.encode(),)))
        return Probe(
            values=frozenset(f for n in needles for f in n.forms),
            needles=tuple(needles),
            dates_at={p: frozenset(v) for p, v in self.dates_at.items() if v},
            times_at={p: frozenset(v) for p, v in self.times_at.items() if v},
            dates=frozenset(dates),
            times=frozenset(times),
            own=own_words(self.policy),
        )

    def _meaningful(self, low: str, kind: str) -> bool:
        s = self.spec
        if low in s.stop or low.strip("[]()") in s.stop:
            return False
        if kind == UID:
            return len(low) >= 8
        if len(set(low.replace(" ", ""))) <= 1:
            return False  # one character repeated: a placeholder ('000000000', 'xxxx')
        sh = shape(low)
        if sh == "digits":
            return len(_DIGIT.findall(low)) >= s.min_digits
        if sh == "ideographic":  # a family name is often two characters
            return len(_ALNUM.findall(low)) >= s.min_ideographic
        return len(_ALNUM.findall(low)) >= s.min_length

    def _forms(self, text: str) -> tuple[bytes, ...]:
        low = text.lower()
        forms = set()
        for enc in ("utf-8", "latin-1"):
            try:
                forms.add(low.encode(enc))
            except UnicodeEncodeError:
                pass
        if self.codecs:  # the source's own character set (ISO 2022, GB18030, ...), folded as a scan folds
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # a value it cannot encode gives no form, not '?'s
                    form = encode_string(text, self.codecs).lower()
                # the escape back at its end depends on what follows in the field: dropped
                forms.add(_TRAILING_ESCAPE.sub(b"", form))
            except (LookupError, UnicodeError, ValueError, UserWarning):
                pass
        return tuple(sorted(forms))


_CLASS = "class"
_ALWAYS = frozenset({"PN", "DA", "DT", "TM", "UI"})  # collected whatever the attribute


@cache
def _standard_kind(tag: int) -> str | None:
    """What a standard attribute's text is to the probe, by its keyword and the data file:
    identifying text, a description, an ID, a class-kind UID, or nothing it collects."""
    s = spec()
    if tag in s.identifying:
        return TEXT
    if tag in s.descriptive:
        return DESCRIPTION
    kw = keyword_for_tag(tag) if dictionary_has_tag(tag) else ""
    if not kw:
        return None
    if s.class_uid.search(kw):
        return _CLASS
    if tag not in s.not_identifying and s.id_suffix.search(kw):
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return None
        return ID if vr in _TEXT_VRS or vr in ("AE", "UR") else None
    return None


def _as_bytes(value: object, vals: list[str] | None) -> bytes:
    """A value as the bytes a header holds it in (raw when it is raw; else its text)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if vals is None:
        items = value if isinstance(value, (list, MultiValue)) else [value]
        vals = [str(v) for v in items if v is not None]
    return "\\".join(vals).encode("utf-8", "replace")


def _items(ds: Dataset, btag, raw) -> list[Dataset]:
    """A sequence's items; one stored as UN (a reader that did not resolve it) is read here
    by its dictionary VR; one that does not parse has none to offer."""
    try:
        value = ds[btag].value
        if isinstance(value, (bytes, bytearray)) and isinstance(raw, RawDataElement):
            value = convert_raw_data_element(raw._replace(VR="SQ"), encoding=ds._character_set, ds=ds).value
    except Exception:  # noqa: BLE001 - a sequence that does not parse: the reader's to judge
        return []
    return [item for item in value or () if isinstance(item, Dataset)]


def _plausible(m: re.Match) -> bool:
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return 1800 <= y <= 2200 and 1 <= mo <= 12 and 1 <= d <= 31


def time_of(v: str) -> str | None:
    """A time of day as HHMMSS (or HHMM), as the probe keys its times; None for one too
    coarse to tell, or a placeholder (all zeros)."""
    digits = re.match(r"\s*(\d{2})(?::?(\d{2}))(?::?(\d{2}))?", v or "")
    if not digits:
        return None
    t = "".join(g for g in digits.groups() if g)
    return None if set(t) == {"0"} else t


def _vr(raw, tag: int) -> str | None:
    """An element's VR, and for a standard element stored as UN, its dictionary's."""
    vr = raw.VR
    if vr and vr != "UN":
        return vr
    if tag >> 16 & 1:
        return vr
    return _dict_vr(tag) or vr


def _dict_vr(tag: int) -> str | None:
    dvr = dictionary_vr(tag)
    if dvr and " or " in dvr:
        dvr = dvr.split(" or ")[0]
    return dvr


def _charsets(ds: Dataset) -> list[str] | None:
    """The source's declared character sets, when a byte scan in UTF-8 and Latin-1 alone
    could miss a value written in them."""
    raw = ds.get("SpecificCharacterSet")
    names = [str(v).strip() for v in (raw if isinstance(raw, (list, MultiValue)) else [raw]) if v]
    if not names or all(n in _DEFAULT_CHARSETS for n in names):
        return None
    return names


def _python_codecs(charsets: list[str] | None) -> list[str] | None:
    if not charsets:
        return None
    from pydicom.charset import convert_encodings

    try:
        return convert_encodings(charsets)
    except Exception:  # noqa: BLE001 - an unknown charset: read as UTF-8/Latin-1
        return None

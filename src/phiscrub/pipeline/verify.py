"""Independent check of a written output: does any source PHI value still show?

It does not trust the transform. It reads the source's identifying values itself, reads
the output back from storage, and looks for each value in the output's header bytes
(case-insensitive, UTF-8 and Latin-1) and in its path. Only a clean result is released.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from pydicom.charset import encode_string
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID_dictionary

from phiscrub.dicom.values import DUMMY
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.profile import Policy

_PROBE_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "UI", "UR"}
_STRICT = "\x01"  # marks a value that identifies by itself (a name, an ID, a birth date)
_IDENTITY_TAGS = frozenset({
    0x00100020, 0x00101000, 0x00101002, 0x00100030, 0x00101040, 0x00102154, 0x00080050,
    0x00100021, 0x00380010, 0x00101090, 0x00102155,
})
_STRING_VRS = {"CS", "IS", "DS", "TM", "AS"}
_NOT_PROBES = {v.lower() for v in DUMMY.values()} | {"anonymous", "anonymized", "removed"}
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
MIN_PROBE = 4
DEFLATED = "1.2.840.10008.1.2.1.99"


@dataclass
class Probe:
    values: frozenset[bytes]
    texts: frozenset[str] = frozenset()  # the same values as text, for decoded text fields


def collect_probe(src: Dataset, policy: Policy, iod: str | None) -> Probe:
    removed: set[str] = set()
    kept: set[str] = set()
    _collect(src, policy, iod, False, removed, kept)
    kept = {k.lower() for k in kept}
    strict = {r[1:].lower() for r in removed if r.startswith(_STRICT)}
    soft = {r.lower() for r in removed if not r.startswith(_STRICT)}
    values = set()
    # names and identifiers are excused only where the policy kept exactly that value in
    # another attribute (an issuer equal to a retained institution name); other removed
    # values also where a kept attribute contains them
    kept_blob = "\x00".join(kept)
    texts = set()
    charsets = _charsets(src)
    for low in (strict - kept) | {v for v in soft - kept if v not in kept_blob}:
        if len(low) < MIN_PROBE or low in _NOT_PROBES or low in UID_dictionary:
            continue
        texts.add(low)
        for enc in ("utf-8", "latin-1"):
            try:
                values.add(low.encode(enc))
            except UnicodeEncodeError:
                pass
        if charsets:  # the source's own character set (ISO 2022, GB18030, ...)
            try:
                values.add(encode_string(low, charsets).lower())
            except (LookupError, UnicodeError, ValueError):
                pass
    return Probe(frozenset(values), frozenset(texts))


def _charsets(ds: Dataset) -> list[str] | None:
    """The source's declared character sets, when a byte scan in UTF-8 and Latin-1 alone
    could miss a value written in them."""
    raw = ds.get("SpecificCharacterSet")
    names = [str(v).strip() for v in (raw if isinstance(raw, (list, MultiValue)) else [raw]) if v]
    if not names or all(n in ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192") for n in names):
        return None
    return names


def _strings(value: object) -> list[str]:
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
        vals: list = text.split("\\")
    else:
        vals = value if isinstance(value, (list, MultiValue)) else [value]
    out = []
    for v in vals:
        s = str(v).strip(" \x00") if v is not None else ""
        if s and s.isprintable():
            out.append(s)
    return out


def _vr(raw, tag: int) -> str | None:
    if raw.VR:
        return raw.VR
    try:
        return dictionary_VR(tag) if dictionary_has_tag(tag) else None
    except KeyError:
        return None


_SKIP, _KEPT, _REMOVED, _SEQ_KEPT, _SEQ_REMOVED = range(5)


def _category(policy: Policy, tag: int, vr: str | None, iod, nested: bool, creator: str | None) -> tuple[int, str]:
    """What the probe does with an element: skip it, note its value as kept, or as removed."""
    rule = policy.resolve(tag, vr, iod, nested, creator)
    if vr == "SQ":
        return (_SEQ_REMOVED if rule.action == Action.REMOVE else _SEQ_KEPT), ""
    private = (tag >> 16) & 1
    probe_vr = vr in _PROBE_VRS or (private and vr in (None, "UN", "LO", "SH", "LT", "ST", "UT"))
    if not probe_vr:
        return (_KEPT if vr in _STRING_VRS and rule.action == Action.KEEP else _SKIP), ""
    shifted = rule.action in (Action.CLEAN, Action.SHIFT_DATE) and vr in ("DA", "DT", "UI")
    if rule.action in (Action.KEEP, Action.CLEAN, Action.CLEAN_TEXT) and not (
        shifted and not policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES)
    ):
        return _KEPT, ""
    return _REMOVED, (_STRICT if (vr == "PN" or tag in _IDENTITY_TAGS) else "")


def _collect(ds: Dataset, policy: Policy, iod, nested, removed: set, kept: set) -> None:
    """Walks raw elements, decoding only string values, so the probe costs little."""
    creators: dict[int, str] = {}
    table = policy._cache.setdefault(("probe", iod, nested), {})
    for btag, raw in list(ds._dict.items()):
        tag = int(btag)
        group, elem = tag >> 16, tag & 0xFFFF
        if group & 1:
            vr = _vr(raw, tag)
            creator = None
            if 0x10 <= elem <= 0xFF:
                vals = _strings(raw.value)
                creators[(group << 8) | elem] = vals[0] if vals else ""
            else:
                creator = creators.get((group << 8) | (elem >> 8))
            cat, mark = _category(policy, tag, vr, iod, nested, creator)
        else:
            key = (tag, raw.VR)
            entry = table.get(key)
            if entry is None:
                entry = table[key] = _category(policy, tag, _vr(raw, tag), iod, nested, None)
            cat, mark = entry
        if cat == _SKIP:
            continue
        if cat >= _SEQ_KEPT:
            target = removed if cat == _SEQ_REMOVED else kept
            for item in ds[btag].value or []:
                _collect(item, policy, iod, True, removed, target)
            continue
        vals = _strings(raw.value)
        if cat == _KEPT:
            kept.update(vals)
            continue
        for v in vals:
            removed.add(mark + v)
            if raw.VR == "PN" or (mark and "^" in v):
                removed.update(_STRICT + p.strip() for p in v.replace("=", "^").split("^") if p.strip())


def header_bytes(data: bytes) -> bytes:
    """Everything before the pixel data element (burned-in text is the pixel stage's job)."""
    cut = len(data)
    for tag in _PIXEL_TAGS:
        pos = data.rfind(tag)
        if pos > 0:
            cut = min(cut, pos)
    return data[:cut]


def verify_output(data: bytes, relpath: str, probe: Probe) -> list[str]:
    """Returns PHI-free reasons; empty means the output may be released."""
    reasons = []
    hdr = header_bytes(_inflated(data)).lower()
    path = relpath.lower().encode("utf-8", "replace")
    leaks = sum(1 for v in probe.values if v in hdr and _found(v, hdr))
    if leaks:
        reasons.append(f"{leaks} source identifying value(s) still present in the output header")
    if any(v in path and _found(v, path) for v in probe.values):
        reasons.append("a source identifying value appears in the output path")
    if data[128:132] != b"DICM":
        reasons.append("output lacks the DICM preamble")
    if not _identity_removed(hdr):
        reasons.append("PatientIdentityRemoved is not YES")
    return reasons


def _found(value: bytes, hay: bytes) -> bool:
    """A word is found as a word: the name part 'mary' is not a leak inside 'primary', and
    the ID '12345' not inside a longer number; mixed values match anywhere."""
    if value.isalpha():
        edge = rb"a-z"
    elif value.isdigit():
        edge = rb"0-9"
    else:
        return True
    pat = rb"(?<![" + edge + rb"])" + re.escape(value) + rb"(?![" + edge + rb"])"
    return re.search(pat, hay) is not None


def _inflated(data: bytes) -> bytes:
    """A deflated transfer syntax compresses everything after the file meta: inflate it, or
    the scan would look at compressed bytes and find nothing."""
    if DEFLATED.encode() not in data[132:600]:
        return data
    meta_len = struct.unpack("<I", data[140:144])[0]  # (0002,0000) UL, explicit VR LE
    end = 144 + meta_len
    try:
        return data[:end] + zlib.decompress(data[end:], -zlib.MAX_WBITS)
    except zlib.error:
        return data[:end]


def _identity_removed(hdr_lower: bytes) -> bool:
    """(0012,0062) PatientIdentityRemoved = YES, found in the raw bytes (any encoding)
    without a second full parse of the output."""
    for tag in (b"\x12\x00\x62\x00", b"\x00\x12\x00\x62"):
        pos = hdr_lower.find(tag)
        while pos != -1:
            if b"yes" in hdr_lower[pos + 4: pos + 12]:
                return True
            pos = hdr_lower.find(tag, pos + 1)
    return False


_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "UR", "CS", "TM", "IS", "DS", "AS"}


def text_field_leaks(ds: Dataset, probe: Probe) -> list[str]:
    """Keywords (or tags) of the output's decoded text fields, sequences included, that
    still hold a source value: catches what a byte scan cannot (a character set other
    than UTF-8 and Latin-1, a value split by escape sequences). Never the value."""
    if not probe.texts:
        return []
    found = []
    for elem in ds.iterall():
        if elem.VR not in _TEXT_VRS or elem.value in (None, b"", ""):
            continue
        try:
            vals = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
            hay = "\x00".join(str(v) for v in vals).lower()
        except Exception:  # noqa: BLE001 - an undecodable value is the byte scan's to judge
            continue
        for t in probe.texts:
            if t in hay and _found(t.encode("utf-8", "ignore"), hay.encode("utf-8", "ignore")):
                found.append(elem.keyword or f"{int(elem.tag):08X}")
                break
    return sorted(set(found))


def ocr_leaks(output: Dataset, source: Dataset, config, frames: int = 3) -> int:
    """Sensitive text that OCR still reads in the output's pixels: the source's own
    values (names, IDs, dates in their written forms) and the generic patterns, judged by
    the same matcher the pixel stage uses, on a sample of the output's frames. A count,
    never the text."""
    from phiscrub.dicom import pixels
    from phiscrub.dicom.burned_in import _sample, _window
    from phiscrub.ocr.engine import get_engine
    from phiscrub.ocr.phi_match import classify, terms_from_header
    from phiscrub.ocr.prepare import detect_text

    cfg = config.pixels
    engine = get_engine(cfg.engine)
    stack, layout = pixels.decode(output)
    stack = _sample(stack, frames)
    found = detect_text(stack, layout.photometric, _window(output), engine, ds=output, read=True, variants="auto",
                        project=False)
    allow = list(cfg.allow) if cfg.allow else None
    hits = classify(found, terms_from_header(source), "sensitive", cfg.threshold, allow, list(cfg.patterns))
    return len(hits)

"""Independent check of a written output: does any source PHI value still show?

It does not trust the transform. The source's identifying values are chosen by the probe
(probe.py) by VR and module, not by the policy; the output is read back from storage and
each value is looked for as a token of its shape in the output's header bytes (after the
words phiscrub itself writes are blanked), in its decoded fields (to name the attribute
that holds it) and in its path. Dates are judged by place: a source date left where it
was, written where the source had none, or at odds with the shift the output's other dates
took, is a leak; a shifted date that happens to land on another of the source's dates is
not. Only a clean result is released.

The per-item gate (verify_output, in the worker) parses the output only when the byte scan
found something, so a clean output costs one scan of its header; the job's verify (with
``fields``) always reads the fields.
"""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from datetime import date

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from phiscrub.pipeline.probe import DATE, DESCRIPTION, ID, NAME, TEXT, TIME, UID, Needle, Probe, collect_probe, spec, time_of

__all__ = ["Finding", "Probe", "collect_probe", "header_bytes", "ocr_leaks", "scan_output", "structure_reasons",
           "text_field_leaks", "verify_output"]

_PIXEL_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")
DEFLATED = "1.2.840.10008.1.2.1.99"
# what phiscrub writes into every output: its stamp is its own, never the source's
_STAMP_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})
_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "UR", "CS", "IS", "DS", "AS", "UI"})
_BYTES_VRS = frozenset({"UN", "OB"})
_HASH = re.compile(rb"sha256:[0-9a-f]+")
_DATE = re.compile(r"\s*(\d{8})")
_RANK = (NAME, ID, TEXT, UID, DATE, TIME, DESCRIPTION)  # the most telling first
MAX_BYTES_SCANNED = 1 << 16  # a binary value larger than this is pixels or a blob, not text


@dataclass(frozen=True)
class Finding:
    """Where a source value was found (a keyword path, 'the output header', 'the output
    path') and what kind of value it was: never the value."""

    where: str
    kind: str
    field: str = "text"  # the kind of field: text, date, time, raw (bytes of an unknown VR)


def header_bytes(data: bytes) -> bytes:
    """Everything before the pixel data element (burned-in text is the pixel stage's job)."""
    cut = len(data)
    for tag in _PIXEL_TAGS:
        pos = data.rfind(tag)
        if pos > 0:
            cut = min(cut, pos)
    return data[:cut]


def scan_output(data: bytes, relpath: str, probe: Probe, ds: Dataset | None = None, *,
                fields: bool = False, header: bytes | None = None) -> list[Finding]:
    """Every place in one output that still holds a source value, once each.

    The byte scan is cheap and sees everything; the output is parsed (or ``ds`` used)
    only when it found something or ``fields`` asks, to name the attribute and to judge
    dates by position. A byte hit that no decoded field explains is reported as such.
    ``header``: the output's folded header, where the caller has it already."""
    hdr = _blank_own(_lower_header(data) if header is None else header, probe.own)
    hits = [n for n in probe.needles if n.in_bytes(hdr)]
    found: list[Finding] = []
    if hits or fields or ds is not None:
        if ds is None:
            try:
                ds = _parse(data)
            except Exception:  # noqa: BLE001 - unparsable: the byte scan's verdict stands alone
                ds = None
        if ds is not None:
            located: set[Needle] = set()
            dated: list[tuple[str, tuple, str]] = []
            _walk(ds, (), "", probe, hits if not fields else list(probe.needles), found, located, dated)
            _judge_dates(dated, probe, found, located)
            hits = [n for n in hits if n not in located]
    for kind in dict.fromkeys(n.kind for n in hits if n.kind != TIME):
        found.append(Finding("the output header", kind))
    path = relpath.lower()
    for kind in dict.fromkeys(n.kind for n in probe.needles if n.kind != TIME and n.in_text(path)):
        found.append(Finding("the output path", kind))
    return _one_per_place(found)


def _one_per_place(found: list[Finding]) -> list[Finding]:
    """Each place once, under the most telling kind of value it holds (a private element
    holding the patient ID is one problem, not an ID and a description)."""
    best: dict[str, Finding] = {}
    for f in found:
        if f.where not in best or _RANK.index(f.kind) < _RANK.index(best[f.where].kind):
            best[f.where] = f
    return list(best.values())


def verify_output(data: bytes, relpath: str, probe: Probe) -> list[str]:
    """Returns PHI-free reasons; empty means the output may be released."""
    hdr = _lower_header(data)
    return [describe(f) for f in scan_output(data, relpath, probe, header=hdr)] + structure_reasons(data, hdr)


def structure_reasons(data: bytes, header: bytes | None = None) -> list[str]:
    """What every output must carry whatever its source: the preamble, and the statement
    that the patient's identity was removed."""
    reasons = []
    if data[128:132] != b"DICM":
        reasons.append("output lacks the DICM preamble")
    if not _identity_removed(_lower_header(data) if header is None else header):
        reasons.append("PatientIdentityRemoved is not YES")
    return reasons


def _lower_header(data: bytes) -> bytes:
    """The output's header (inflated), folded to lower case."""
    return header_bytes(_inflated(data)).lower()


def describe(f: Finding) -> str:
    if f.where == "the output path":
        return f"a source {f.kind} appears in the output path"
    if f.where == "the output header":
        return f"a source {f.kind} still present in the output header, outside any field it could read"
    return f"a source {f.kind} still present in the header, {f.field} field {f.where}"


def text_field_leaks(ds: Dataset, probe: Probe) -> list[str]:
    """Keyword paths of the output's fields, sequences included, that still hold a source
    value: what a byte scan cannot name (nor see through another character set). Never
    the value."""
    found: list[Finding] = []
    located: set[Needle] = set()
    dated: list[tuple[str, tuple, str]] = []
    _walk(ds, (), "", probe, list(probe.needles), found, located, dated)
    _judge_dates(dated, probe, found, located)
    return sorted({f.where.rsplit(" (", 1)[0] for f in found})


def _parse(data: bytes) -> Dataset:
    from pydicom import dcmread

    return dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)


def _blank_own(hdr: bytes, own: tuple[bytes, ...]) -> bytes:
    """phiscrub's own words, blanked where they stand (same length, so nothing joins)."""
    if b"sha256:" in hdr:
        hdr = _HASH.sub(lambda m: b"\x00" * len(m.group(0)), hdr)
    for w in own:
        if w in hdr:
            hdr = hdr.replace(w, b"\x00" * len(w))
    return hdr


def _label(elem, parent: str) -> str:
    """'Keyword (gggg,eeee)', inside its sequences' keywords: a place, never a value."""
    tag = int(elem.tag)
    hexed = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    name = f"{elem.keyword} {hexed}" if elem.keyword else hexed
    return f"{parent}>{name}" if parent else name


def _parent(elem, parent: str) -> str:
    name = elem.keyword or f"({int(elem.tag) >> 16:04X},{int(elem.tag) & 0xFFFF:04X})"
    return f"{parent}>{name}" if parent else name


def _walk(ds: Dataset, pos: tuple, parent: str, probe: Probe, needles: list[Needle], found: list[Finding],
          located: set[Needle], dated: list[tuple[str, tuple, str]]) -> None:
    """Every field of the output, sequences included, against ``needles``; its dates are
    noted in ``dated`` and judged together afterwards (``_judge_dates``)."""
    s = spec()
    text_needles = [n for n in needles if n.kind != TIME]
    marker = [w.decode("utf-8", "ignore") for w in probe.own]
    for elem in ds:
        tag = int(elem.tag)
        if tag >> 16 == 0x0002 or tag in _STAMP_TAGS:
            continue
        here = (*pos, tag)
        vr = elem.VR
        if vr == "SQ":
            for i, item in enumerate(elem.value or ()):
                _walk(item, (*here, i), _parent(elem, parent), probe, needles, found, located, dated)
            continue
        value = elem.value
        if value in (None, b"", ""):
            continue
        if vr in ("DA", "DT", "TM"):
            if tag not in s.not_patient_dates:
                _dates(vr, _values(value), here, _label(elem, parent), probe, found, located, dated)
            else:  # a code system's date: what it holds is explained, whatever date it is
                located.update(n for n in needles if n.kind == DATE and any(str(v).startswith(n.text)
                                                                            for v in _values(value)))
            continue
        if vr in _TEXT_VRS:
            hay = "\\".join(str(v) for v in _values(value)).lower()
            for w in marker:
                if w and w in hay:
                    hay = hay.replace(w, "\x00")
            for n in text_needles:
                if n.in_text(hay):
                    found.append(Finding(_label(elem, parent), n.kind))
                    located.add(n)
        elif vr in _BYTES_VRS and isinstance(value, (bytes, bytearray)) and len(value) <= MAX_BYTES_SCANNED:
            hay_b = bytes(value).lower()
            for n in text_needles:
                if n.in_bytes(hay_b):
                    found.append(Finding(_label(elem, parent), n.kind, "raw"))
                    located.add(n)


def _values(value) -> list:
    return list(value) if isinstance(value, (list, MultiValue)) else [value]


def _dates(vr: str, vals: list, here: tuple, label: str, probe: Probe, found: list[Finding],
           located: set[Needle], dated: list[tuple[str, tuple, str]]) -> None:
    """Notes the output's dates for ``_judge_dates``; judges its times: a source time in a
    time field is a leak where the source had that time at this place, or none at all."""
    by_text = {n.text: n for n in probe.needles if n.kind == TIME}
    for v in vals:
        v = str(v)
        if vr in ("DA", "DT") and (m := _DATE.match(v)):
            dated.append((label, here, m.group(1)))
        t = time_of(v.strip()[8:] if vr == "DT" else v)
        if t and t in probe.times:
            if t in by_text:
                located.add(by_text[t])
            src_here = probe.times_at.get(here)
            if src_here is None or t in src_here:
                found.append(Finding(label, TIME, "time"))


def _judge_dates(dated: list[tuple[str, tuple, str]], probe: Probe, found: list[Finding],
                 located: set[Needle]) -> None:
    """A source date in a date field is a leak where it stands unchanged, where the source
    had no date there, or where it is not the shift the others of the output took. The
    last rule is why dates are judged together: a date shifted by the patient's offset can
    land on another of the source's dates (its offset equal to the gap between them), and
    that is the shift, not a leak; the offset is the one most of the output's dates took."""
    by_text = {n.text: n for n in probe.needles if n.kind == DATE}
    deltas: Counter[int] = Counter()
    for _, here, d in dated:
        src_here = probe.dates_at.get(here)
        if src_here and len(src_here) == 1 and d not in src_here:
            if (gap := _days(d, next(iter(src_here)))) is not None:
                deltas[gap] += 1
    best = deltas.most_common(2)
    offset = best[0][0] if best and (len(best) == 1 or best[0][1] > best[1][1]) else None
    for label, here, d in dated:
        if d not in probe.dates:
            continue
        if d in by_text:
            located.add(by_text[d])
        src_here = probe.dates_at.get(here)
        if src_here is None or d in src_here:
            found.append(Finding(label, DATE, "date"))
        elif offset is None or len(src_here) != 1 or _days(d, next(iter(src_here))) != offset:
            found.append(Finding(label, DATE, "date"))


def _days(a: str, b: str) -> int | None:
    """Days from b to a (YYYYMMDD each), or None where either is no calendar date."""
    try:
        return (date(int(a[:4]), int(a[4:6]), int(a[6:8])) - date(int(b[:4]), int(b[4:6]), int(b[6:8]))).days
    except ValueError:
        return None


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


def ocr_leaks(output: Dataset, source: Dataset, config, frames: int = 3) -> int:
    """Sensitive text that OCR still reads in the output's pixels: the source's own
    values (names, IDs, dates in their written forms) and the generic patterns, judged by
    the same matcher the pixel stage uses, on a sample of the output's frames. A count,
    never the text."""
    from phiscrub.pixels import codec
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.phi_match import classify, terms_from_header
    from phiscrub.pixels.views import detect_text, header_window, sample_frames

    cfg = config.pixels
    engine = get_engine(cfg.engine)
    stack, layout = codec.decode(output)
    stack = sample_frames(stack, frames)
    found = detect_text(stack, layout.photometric, header_window(output), engine, ds=output, read=True, variants="auto",
                        project=False)
    allow = list(cfg.allow) if cfg.allow else None
    hits = classify(found, terms_from_header(source), "sensitive", cfg.threshold, allow, list(cfg.patterns))
    return len(hits)

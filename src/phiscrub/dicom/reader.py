"""Turns bytes into a dataset or a typed, PHI-free reason why not."""

from __future__ import annotations

import io
import os
import re
import struct
import traceback
import warnings
import zlib
from functools import cache

import pydicom
from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import UID
from pydicom.valuerep import VR

from phiscrub.dicom.un_vr import resolve_un
from phiscrub.errors import CorruptFile, IncompleteInstance, NotDicom, PhiscrubError, UnsupportedInput

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
MAX_BYTES = 4 * 1024**3  # beyond this a single instance is not plausible here
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_EOF_IN_ITEM = "End of file reached before delimiter"
# every composite instance has these; without them an output has no place in its study, and
# a file cut between two elements that lost them lost the patient's values too
REQUIRED_UIDS = {
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
}
_VRS = frozenset(v.value for v in VR)
_UID_TEXT = re.compile(rb"[0-9]+(\.[0-9]+)*")
# VRs pydicom decodes with struct: a length that is no multiple of the size cannot be read back
_FIXED_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8}
_PYDICOM_DIR = os.path.dirname(pydicom.__file__) + os.sep
_PHISCRUB_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# only where pydicom itself names the element: a value quoted in its message is never read
_TAG_IN_MESSAGE = re.compile(r"(?:tag|element|parse)\s+\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")
# what pydicom (and the codecs it calls) raise on bytes it cannot make sense of
_DATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, NotImplementedError, AttributeError, OverflowError,
                EOFError, OSError, struct.error, zlib.error, BytesLengthException, MemoryError)


def read_instance(data: bytes) -> FileDataset:
    if not data:
        raise NotDicom("empty file (0 bytes)")
    if len(data) > MAX_BYTES:
        raise UnsupportedInput("file larger than 4 GiB")
    has_preamble = len(data) >= 132 and data[128:132] == b"DICM"
    sniffed = has_preamble or _looks_like_raw_dataset(data)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = dcmread(io.BytesIO(data), force=not has_preamble)
            _ = ds.keys()
            resolve_un(ds)  # standard attributes stored as UN, read by their dictionary VR
    except InvalidDicomError:
        raise NotDicom("not a DICOM file") from None
    except (EOFError, struct.error, OverflowError, MemoryError, OSError, zlib.error):
        # (pydicom raises OSError for a stream with no tag where one must be: not storage trouble)
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start") from None
        raise CorruptFile("truncated or malformed data element stream") from None
    except (ValueError, KeyError, TypeError, NotImplementedError, AttributeError, IndexError,
            BytesLengthException) as e:
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start") from None
        raise input_error(e) or CorruptFile(f"cannot parse data elements ({type(e).__name__})") from None
    if any(_EOF_IN_ITEM in str(w.message) for w in caught):
        # pydicom warns and hands back what it had (often nothing) when the file ends inside
        # an undefined-length sequence or encapsulated pixel data
        raise CorruptFile("truncated: the file ends inside a sequence or encapsulated pixel data")
    if len(ds._dict) == 0:
        raise NotDicom("no data elements")
    _check_elements(ds, sniffed)
    meta = getattr(ds, "file_meta", None)
    sop_class = (meta.get("MediaStorageSOPClassUID") if meta else None) or ds.get("SOPClassUID")
    if str(sop_class or "") == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise UnsupportedInput("DICOMDIR media index (lists patients; rebuild it from the outputs)")
    if sop_class is None:
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start")
        raise NotDicom("no SOP Class UID: not a composite DICOM instance")
    _check_complete(data, ds)
    _check_identifiers(ds)
    return ds


def _looks_like_raw_dataset(data: bytes) -> bool:
    """A file without preamble may still be DICOM: it then starts with a group 0002 or
    0008 element (little or big endian)."""
    if len(data) < 8:
        return False
    g_le = struct.unpack("<H", data[:2])[0]
    g_be = struct.unpack(">H", data[:2])[0]
    return g_le in (0x0002, 0x0008) or g_be in (0x0002, 0x0008)


def _check_complete(data: bytes, ds: FileDataset) -> None:
    """pydicom tolerates a value cut short at end of file; we do not. A file cut at an
    element boundary parses as a shorter, valid-looking data set; when the cut fell between
    the image attributes (group 0028) and the pixel data, the missing pixels give it away.
    (A cut earlier in the header cannot be told from a short header.)"""
    if "Rows" in ds and "Columns" in ds and not any(k in ds for k in PIXEL_KEYWORDS):
        raise CorruptFile("truncated: image attributes (Rows, Columns) but no pixel data")
    last = None
    for raw in ds._dict.values():
        last = raw
    if last is None:
        return
    value = getattr(last, "value", None)
    length = getattr(last, "length", None)
    if isinstance(value, (bytes, bytearray)) and length not in (None, 0xFFFFFFFF):
        if len(value) < length:
            raise CorruptFile("truncated: the last data element is cut short")


def _check_identifiers(ds: FileDataset) -> None:
    """A cut between two elements leaves a shorter data set that reads as sound. Without its
    UIDs it would be written outside any study, and its free text could not be cleaned of
    the patient's name that was cut off with them: it is quarantined as incomplete. Only
    keywords are named, never the values; the values are not decoded (a damaged one would
    raise here for the wrong reason)."""
    missing = [kw for tag, kw in REQUIRED_UIDS.items() if not _has_value(ds, tag)]
    if missing:
        raise IncompleteInstance(f"incomplete instance: no {', '.join(missing)} (cut short or damaged?)")
    for tag, kw in REQUIRED_UIDS.items():
        vr = getattr(ds._dict[tag], "VR", None)  # type: ignore[index]
        if vr not in (None, "UI", "UN"):  # (a VR read here is one of the standard's, never file text)
            raise CorruptFile(f"data element {kw} {_tag(tag)} has VR {vr}, not UI (damaged?)")
    # the policy keeps the SOP Class UID as it is: one whose length was damaged holds what it
    # swallowed of the elements after it (the patient's name, say), and would release it
    raw = ds._dict[0x00080016]  # type: ignore[index]
    value = raw.value if isinstance(raw.value, (bytes, bytearray)) else str(raw.value).encode("latin-1", "replace")
    if not _UID_TEXT.fullmatch(bytes(value).rstrip(b"\x00 ")):
        raise CorruptFile("data element SOPClassUID (0008,0016) is not a UID (damaged length?)")


def _has_value(ds: FileDataset, tag: int) -> bool:
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    if elem is None:
        return False
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return bool(bytes(value).strip(b"\x00 "))
    return bool(str(value or "").strip("\x00 "))


def _check_elements(ds: FileDataset, sniffed: bool) -> None:
    """What pydicom reads without complaint but cannot write, or reads wrong later: checked
    on the top-level elements as they lie, raw, at no cost of decoding. Damage deeper in
    sequences surfaces when the header pass reads it (see ``input_error``). A file that did
    not look like DICOM to begin with and reads as nonsense is no DICOM, not a damaged one."""
    try:
        _check_top_level(ds)
    except CorruptFile:
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start") from None
        raise


def _check_top_level(ds: FileDataset) -> None:
    ts = getattr(getattr(ds, "file_meta", None), "get", lambda _k: None)("TransferSyntaxUID")
    compressed = False
    try:
        compressed = bool(ts) and UID(str(ts)).is_compressed
    except (ValueError, TypeError):
        pass
    for tag, raw in ds._dict.items():
        group = tag >> 16
        if group == 0x0000:
            raise CorruptFile(f"data element {_tag(tag)} of the command group inside the data set (damaged tag?)")
        if group == 0x0002:
            raise CorruptFile(f"file meta element {_tag(tag)} inside the data set (damaged tag?)")
        if group == 0xFFFE:
            raise CorruptFile(f"stray item or delimiter tag {_tag(tag)} outside a sequence")
        vr = getattr(raw, "VR", None)
        if vr is not None and vr not in _VRS:
            raise CorruptFile(f"data element {_tag(tag)} has no valid VR")
        if tag == 0x7FE00010 and compressed and getattr(raw, "length", 0xFFFFFFFF) != 0xFFFFFFFF:
            raise CorruptFile("pixel data (7FE0,0010) not encapsulated, as its compressed transfer syntax requires")


def check_readable(ds: Dataset, _path: tuple[str, ...] = ()) -> None:
    """An element the policy keeps is written as it was read, raw, never decoded (that is
    what keeps a header pass cheap). A damaged one (a VR that does not exist, a length no
    value of its VR can have, at any depth) would make an output that no reader can read;
    checked on what is about to be written, so damage in what the policy removed does not
    count. Reads no value: a length and a VR are all it looks at."""
    for tag, elem in ds._dict.items():
        if type(elem) is RawDataElement:
            raw_vr = elem.VR
            vr = raw_vr or _dictionary_vr(tag)
            if raw_vr is not None and raw_vr not in _VRS:
                raise CorruptFile(f"data element {_where(_path, tag)} has no valid VR")
            length = elem.length
            size = _FIXED_SIZE.get(vr) if vr else None
            if size and length not in (0, 0xFFFFFFFF) and length % size:
                raise CorruptFile(f"cannot decode data element {_where(_path, tag)}: bad length for VR {vr}")
            value = elem.value
            if length != 0xFFFFFFFF and isinstance(value, bytes) and len(value) < length:
                # pydicom hands back what there was; deep in a sequence nothing else notices (a
                # value something decoded on the way, the free-text cleaner say, is not seen here)
                raise CorruptFile(f"truncated: data element {_where(_path, tag)} runs past the end of its item or the file")
            if vr != "SQ":
                continue
            elem = ds[tag]  # a sequence still raw: parsed now (damage in it is typed by input_error)
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                check_readable(item, (*_path, _tag(tag), f"item {i + 1}"))


def _where(path: tuple[str, ...], tag: int) -> str:
    return " > ".join((*path, _tag(tag)))


@cache
def _dictionary_vr(tag: int) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr if vr in _VRS else None  # 'US or SS' and the like: either has the size below


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def input_error(exc: BaseException) -> PhiscrubError | None:
    """The typed, one-line reason for an error pydicom (or a codec below it) raised on this
    input's bytes, else None (then it is ours: an internal error).

    pydicom decodes a value only when something first reads it, so the damage of a file that
    parsed shows up late: in the header pass, the verifier's probe, or the write. Whether it
    came from the input is told by where it rose (below the last phiscrub frame, inside
    pydicom), not by its type alone, so a bug of ours is not passed off as a damaged file.
    The element is named by tag as pydicom's own message names it; the message itself,
    which can quote a value, is never passed on."""
    if isinstance(exc, PhiscrubError) or not isinstance(exc, _DATA_ERRORS) or not _raised_in_pydicom(exc):
        return None
    text = _chain_text(exc)
    tags = []
    for g, e in _TAG_IN_MESSAGE.findall(text):
        t = f"({g.upper()},{e.upper()})"
        if not tags or tags[-1] != t:
            tags.append(t)
    low = text.lower()
    if _raised_in(exc, "charset.py"):  # read before the elements it decodes, and named by none of them
        tags, kind = ["(0008,0005)"], "unknown Specific Character Set"
    elif any(t.startswith("(FFFE,") for t in tags):
        kind = "stray item or delimiter tag"
        tags = tags[: next(i for i, t in enumerate(tags) if t.startswith("(FFFE,")) + 1]
    elif "value representation" in low or "ambiguous vr" in low:
        kind = "invalid VR"
    elif isinstance(exc, BytesLengthException) or "length" in low:
        kind = "bad length"
    elif "encapsulat" in low:
        kind = "pixel data not encapsulated as its transfer syntax requires"
    elif isinstance(exc, zlib.error):
        kind = "deflated data set cannot be inflated"
    elif isinstance(exc, (OSError, EOFError, struct.error)):
        kind = "truncated or malformed"
    elif isinstance(exc, UnicodeError):
        kind = "text in an unknown encoding"
    else:
        kind = f"undecodable value ({type(exc).__name__})"
    verb = "encode" if _raised_in(exc, "filewriter.py") else "decode"
    where = f"data element {' > '.join(tags)}" if tags else "the data element stream"
    return CorruptFile(f"cannot {verb} {where}: {kind}")


def _frames(exc: BaseException) -> list[str]:
    return [f.f_code.co_filename for f, _ in traceback.walk_tb(exc.__traceback__)]


def _raised_in_pydicom(exc: BaseException) -> bool:
    files = _frames(exc)
    ours = [i for i, f in enumerate(files) if f.startswith(_PHISCRUB_DIR)]
    below = files[ours[-1] + 1:] if ours else files
    return any(f.startswith(_PYDICOM_DIR) for f in below)


def _raised_in(exc: BaseException, name: str) -> bool:
    return any(f.startswith(_PYDICOM_DIR) and f.endswith(name) for f in _frames(exc))


def _chain_text(exc: BaseException) -> str:
    """The messages of the exception and of those it was raised from (pydicom wraps one
    per nesting level: 'With tag (0040,A730) got exception: ...')."""
    parts, seen = [], set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)

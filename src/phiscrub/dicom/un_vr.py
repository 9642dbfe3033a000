"""Standard attributes stored with VR UN, read by their dictionary VR before the policy.

Older devices and re-encoders write explicit-VR files whose standard attributes, whole
sequences included, carry VR UN. The header pass decides by VR: a date stored as UN is
not shifted and a sequence stored as UN is not entered, so its UIDs and dates survive.
Here each such element becomes what the dictionary says it is, at any depth, and is then
written with that VR. The content of a sequence stored as UN may be implicit (as PS3.5
6.2.2 asks) or explicit; pydicom's item reader tells the two apart per item.

An element that cannot be read by its dictionary VR is removed, as the policy removes an
unknown attribute: nothing unread is passed on. Private elements are left to the policy
(it removes them unless retain_safe_private keeps one, and header.py reads a kept one by
its creator's dictionary).
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass

from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

from phiscrub.dicom import quiet  # noqa: F401  (pydicom's warnings quote values)

# VRs with a 2-byte length in explicit VR: a longer value cannot be one of them.
_SHORT_LENGTH_VRS = frozenset("AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV", "UN", "OB or OW", "US or OW", "US or SS or OW"})
# Binary numbers: a value is a whole number of them, or it does not read.
_WIDTH = {"US": 2, "SS": 2, "OW": 2, "UL": 4, "SL": 4, "FL": 4, "AT": 4, "OF": 4, "OL": 4,
          "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}
# An explicit-VR element header with VR UN: where a sequence's bytes lack it, no element
# inside is stored as UN and the sequence need not be parsed here.
_UN_HEADER = b"UN\x00\x00"


@dataclass
class UnOutcome:
    """Counts only (never tags' values): what the pass converted and what it removed."""

    converted: int = 0
    removed: int = 0


def resolve_un(ds: Dataset) -> UnOutcome:
    """Give every standard element stored as UN its dictionary VR, in place, at any depth."""
    out = UnOutcome()
    _level(ds, out)
    return out


def _level(ds: Dataset, out: UnOutcome) -> None:
    elems = ds._dict
    for btag, raw in list(elems.items()):
        tag = int(btag)
        if (tag >> 16) & 1:
            continue
        vr = raw.VR
        if vr == "UN":
            dvr = _dict_vr(tag)
            if dvr is None:
                continue  # unknown to the dictionary: the policy removes unknown attributes
            elem = _convert(ds, raw, dvr)
            if elem is None:
                del elems[btag]
                out.removed += 1
                continue
            elems[btag] = elem
            out.converted += 1
            if elem.VR == "SQ":
                for item in elem.value:
                    _level(item, out)
                _settle(elem)
            continue
        if vr == "SQ" and not isinstance(raw, RawDataElement) and _dict_vr(tag) not in (None, "SQ"):
            # pydicom reads any UN of undefined length as a sequence (PS3.5 6.2.2); one whose
            # dictionary VR is not SQ was no sequence, and its bytes are gone
            del elems[btag]
            out.removed += 1
            continue
        if vr != "SQ":
            continue
        if isinstance(raw, RawDataElement) and raw.value is not None and _UN_HEADER not in raw.value:
            continue  # nothing stored as UN inside: let the header pass parse it, or not
        for item in ds[btag].value or ():
            _level(item, out)


@functools.lru_cache(maxsize=8192)
def dictionary_vr(tag: int) -> str | None:
    """The VR the data dictionary gives a standard tag, else None: the one lookup for every
    reader of raw elements (the header walk, inspect, the term collector, this module), whose
    implicit-VR and UN elements carry no usable VR of their own."""
    try:
        return dictionary_VR(tag) if dictionary_has_tag(tag) else None
    except KeyError:
        return None


def _dict_vr(tag: int) -> str | None:
    vr = dictionary_vr(tag)
    return None if vr == "UN" else vr


def _convert(ds: Dataset, raw: object, vr: str) -> DataElement | None:
    """The element read as ``vr``, or None where its bytes do not read as one."""
    if not isinstance(raw, RawDataElement):
        return None  # a UN already converted by pydicom stayed UN: it did not read
    if raw.length == 0xFFFFFFFF and vr != "SQ":
        return None
    size = len(raw.value or b"")
    if vr in _SHORT_LENGTH_VRS and size > 0xFFFF or size % _WIDTH.get(vr, 1):
        return None
    if vr == "SQ" and raw.length != 0xFFFFFFFF and not _framed(raw.value or b"", raw.is_little_endian):
        return None  # pydicom would read any bytes as some items: check they are items
    try:
        elem = convert_raw_data_element(raw._replace(VR=vr), encoding=ds._character_set, ds=ds)
    except Exception:  # noqa: BLE001 - any failure to read means the element goes
        return None
    if elem.VR == "UN":  # pydicom fell back: the bytes did not fit the VR's length rules
        return None
    if isinstance(elem.value, bytes) and vr not in _BYTES_VRS:
        return None  # left as bytes: pydicom could not read them as this VR
    if vr == "SQ":
        try:
            for item in elem.value:
                _ = item.keys()
        except Exception:  # noqa: BLE001
            return None
    return elem


def _framed(value: bytes, little_endian: bool) -> bool:
    """Whether a defined-length sequence value is a run of items that fills it exactly."""
    fmt = "<HHL" if little_endian else ">HHL"
    pos, end = 0, len(value)
    while pos < end:
        if pos + 8 > end:
            return False
        group, elem, length = struct.unpack_from(fmt, value, pos)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return True  # a delimiter inside a defined length: harmless, pydicom stops there
        if (group, elem) != (0xFFFE, 0xE000):
            return False
        if length == 0xFFFFFFFF:
            return True  # an undefined-length item: pydicom's reader finds its end
        pos += 8 + length
    return pos == end


def _settle(elem: DataElement) -> None:
    """Turn the raw elements left in a sequence read from UN into elements with their VR.

    Its items may have been read as implicit VR inside an explicit file; converted here,
    the writer gives each element its VR in the file's own encoding. Runs after
    ``_level`` has read the UN elements inside, so only known VRs are met here.
    """
    for item in elem.value:
        for sub in item:
            if sub.VR == "SQ":
                _settle(sub)

"""Turns bytes into a dataset or a typed, PHI-free reason why not."""

from __future__ import annotations

import io
import struct
import warnings

from pydicom import dcmread
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError

from phiscrub.errors import CorruptFile, NotDicom, UnsupportedInput

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
MAX_BYTES = 4 * 1024**3  # beyond this a single instance is not plausible here
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_EOF_IN_ITEM = "End of file reached before delimiter"


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
    except InvalidDicomError:
        raise NotDicom("not a DICOM file") from None
    except (EOFError, struct.error, OverflowError, MemoryError):
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start") from None
        raise CorruptFile("truncated or malformed data element stream") from None
    except (ValueError, KeyError, TypeError, NotImplementedError, AttributeError, IndexError) as e:
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start") from None
        raise CorruptFile(f"cannot parse data elements ({type(e).__name__})") from None
    if any(_EOF_IN_ITEM in str(w.message) for w in caught):
        # pydicom warns and hands back what it had (often nothing) when the file ends inside
        # an undefined-length sequence or encapsulated pixel data
        raise CorruptFile("truncated: the file ends inside a sequence or encapsulated pixel data")
    if len(ds._dict) == 0:
        raise NotDicom("no data elements")
    meta = getattr(ds, "file_meta", None)
    sop_class = (meta.get("MediaStorageSOPClassUID") if meta else None) or ds.get("SOPClassUID")
    if str(sop_class or "") == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds:
        raise UnsupportedInput("DICOMDIR media index (lists patients; rebuild it from the outputs)")
    if sop_class is None:
        if not sniffed:
            raise NotDicom("no DICM preamble and no DICOM data elements at the start")
        raise NotDicom("no SOP Class UID: not a composite DICOM instance")
    _check_complete(data, ds)
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

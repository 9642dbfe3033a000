"""Standard attributes stored with VR UN: read by their dictionary VR before the policy.

The inputs are pydicom's own UN-encoded test files and files built here byte by byte: a
Study Date as UN, sequences as UN with defined and undefined length, implicit and explicit
inner encoding, one longer than a 2-byte length can say, and UN elements that do not read
by their dictionary VR. No source date or instance UID may survive in the output bytes,
and every element of the output carries its dictionary VR.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from functools import cache
from pathlib import Path

import pytest
from pydicom import config as pydicom_config
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, UID_dictionary

from phiscrub.keys import load_key
from phiscrub.policy.config import from_mapping
from phiscrub.transform import transform_dicom

from ..conftest import TEST_FILES

RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
REF_RT_PLAN_SEQ = 0x300C0002  # not in Table E.1-1: kept, so entered when read as SQ
REF_STRUCTURE_SET_SEQ = 0x300C0060
REF_FRACTION_GROUP_SEQ = 0x300C0020
ACQUISITION_MATRIX = 0x00181310  # US, 4 values: 8 bytes
OPTIONS = [[], ["retain_longitudinal_modified_dates"]]
_CLASS = re.compile(r"(Class|TransferSyntax|CodingScheme|Creator|Mapping|Context)\w*UID$")
_D8 = re.compile(rb"(?<!\d)(\d{8})")


def _uid(n: int) -> str:
    return f"1.2.826.0.1.3680043.10.543.5551.{n}"


def _encode(ds: Dataset, implicit: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


def _element(tag: int, value: bytes, undefined: bool = False) -> bytes:
    """An explicit VR little endian element stored as UN."""
    length = 0xFFFFFFFF if undefined else len(value)
    return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, b"UN", 0, length) + value


def _items(contents: list[bytes], undefined_items: bool, undefined_seq: bool) -> bytes:
    out = b""
    for c in contents:
        if undefined_items:
            out += b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + c + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        else:
            out += b"\xfe\xff\x00\xe0" + struct.pack("<I", len(c)) + c
    return out + (b"\xfe\xff\xdd\xe0\x00\x00\x00\x00" if undefined_seq else b"")


def _plan_item(n: int, implicit: bool) -> bytes:
    """A Referenced RT Plan item with an instance UID and a date, and a sequence inside."""
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = _uid(100000 + n)
    inner.ReferencedFractionGroupNumber = 1
    item = Dataset()
    item.ReferencedSOPClassUID = RT_PLAN
    item.ReferencedSOPInstanceUID = _uid(n)
    item.InstanceCreationDate = f"2019{1 + n % 12:02d}{1 + n % 28:02d}"
    item.ReferencedFractionGroupSequence = [inner]
    body = _encode(item, implicit)
    if not implicit:  # a date stored as UN inside an explicit item stored as UN
        body = body.replace(b"\x08\x00\x12\x00DA\x08\x00", b"\x08\x00\x12\x00UN\x00\x00\x08\x00\x00\x00")
        assert b"\x08\x00\x12\x00UN" in body
    return body


def _base(top_un: dict[int, bytes] | None = None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = RT_PLAN, _uid(1)
    ds.StudyDate, ds.StudyTime = "20210304", "101500"
    ds.Modality, ds.PatientName, ds.PatientID = "RTPLAN", "Unvr^Patricia", "UNVR0042"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(2), _uid(3)
    saved = pydicom_config.replace_un_with_known_vr
    pydicom_config.replace_un_with_known_vr = False  # else pydicom stores them by their VR
    try:
        for tag, raw in (top_un or {}).items():
            ds.add_new(tag, "UN", raw)
    finally:
        pydicom_config.replace_un_with_known_vr = saved
    return ds


def _file(ds: Dataset, tail: bytes = b"") -> bytes:
    """The dataset written explicit VR, with elements of higher tags appended as bytes."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue() + tail
    for tag in ds.keys():
        if ds[tag].VR == "UN":
            assert struct.pack("<HH", tag.group, tag.element) + b"UN" in data
    return data


@cache
def _built() -> dict[str, bytes]:
    files = {"study_date_as_un": _file(_base({0x00080020: b"20210304"}))}
    for implicit in (True, False):
        enc = "implicit" if implicit else "explicit"
        for items_u, seq_u, name in ((False, False, "defined"), (True, True, "undefined"),
                                     (False, True, "undefined_seq")):
            body = _items([_plan_item(10, implicit), _plan_item(11, implicit)], items_u, seq_u)
            files[f"seq_{name}_{enc}"] = _file(_base(), _element(REF_RT_PLAN_SEQ, body, seq_u))
        # longer than 0xFFFF: pydicom does not look such a UN up in its dictionary itself
        body = _items([_plan_item(1000 + i, implicit) for i in range(900)], False, False)
        assert len(body) > 0xFFFF
        files[f"seq_long_{enc}"] = _file(_base(), _element(REF_RT_PLAN_SEQ, body))
    return files


def _unreadable() -> bytes:
    """A US with 3 bytes, and a 'sequence' whose bytes are no items."""
    garbage = b"\x01\x02\x03\x04" + _uid(77).encode() + b"\x00"
    ds = _base({ACQUISITION_MATRIX: b"\x01\x02\x03"})
    return _file(ds, _element(REF_STRUCTURE_SET_SEQ, garbage))


def _pydicom_un_files() -> list[Path]:
    out = []
    for name in ("rtdose_rle.dcm", "rtdose_rle_1frame.dcm", "explicit_VR-UN.dcm"):
        path = TEST_FILES / name
        if not path.exists():
            found = get_testdata_file(name, download=False)  # pydicom-data, where installed
            path = Path(found) if isinstance(found, str) else path
        out.append(path)
    return out


def _source_values(data: bytes) -> tuple[set[bytes], set[bytes]]:
    """Dates (8 digits of any DA/DT) and instance UIDs of a source, at any depth."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(io.BytesIO(data))
    dates: set[bytes] = set()
    uids: set[bytes] = set()

    def walk(d: Dataset) -> None:
        for e in d:
            vals = e.value if isinstance(e.value, (list, MultiValue)) else [e.value]
            if e.VR == "SQ":
                for item in e.value:
                    walk(item)
            elif e.VR in ("DA", "DT"):
                dates.update(m for v in vals if v for m in _D8.findall(str(v).encode()))
            elif e.VR == "UI" and not _CLASS.search(e.keyword or ""):
                uids.update(str(v).encode() for v in vals if v and str(v) not in UID_dictionary)
    walk(ds)
    return dates, uids


def _check_vrs(data: bytes) -> list[str]:
    """Tags whose stored VR is not their dictionary VR (UN included), at any depth."""
    ds = dcmread(io.BytesIO(data))
    bad: list[str] = []

    def walk(d: Dataset) -> None:
        for tag, raw in list(d._dict.items()):
            if tag.is_private or not dictionary_has_tag(tag):
                continue
            dvr = dictionary_VR(tag)
            if raw.VR == "UN" or (" " not in dvr and raw.VR != dvr):
                bad.append(f"{int(tag):08X}:{raw.VR}")
            if dvr == "SQ":
                for item in d[tag].value:
                    walk(item)
    walk(ds)
    return bad


def _run(data: bytes, options: list[str]) -> bytes:
    return transform_dicom(data, from_mapping({"options": options}), load_key(None), "test").data


@pytest.mark.parametrize("options", OPTIONS, ids=["basic", "modified_dates"])
@pytest.mark.parametrize("name", sorted(_built()))
def test_built_un_files_leak_nothing_and_carry_real_vrs(name: str, options: list[str]) -> None:
    data = _built()[name]
    out = _run(data, options)
    planted = [_uid(n).encode() for n in (1, 2, 3, 10, 11, 100010, 100011)]
    if "long" in name:
        planted += [_uid(n).encode() for n in (1000, 1450, 1899, 101000, 101899)]
    leaked = [p for p in planted if p in out]
    dates = {m for m in _D8.findall(data) if m.startswith((b"2019", b"2021"))}
    leaked += [d for d in dates if d in out]
    assert not leaked, leaked
    assert not _check_vrs(out), _check_vrs(out)
    ds = dcmread(io.BytesIO(out))
    if name != "study_date_as_un":
        seq = ds[REF_RT_PLAN_SEQ].value  # entered, remapped, kept
        assert seq[0].ReferencedSOPClassUID == RT_PLAN
        assert seq[0].ReferencedSOPInstanceUID.startswith("2.25.")
        assert seq[0].ReferencedFractionGroupSequence[0].ReferencedSOPInstanceUID.startswith("2.25.")
    if options:
        assert ds.StudyDate not in ("", "20210304")
        if name != "study_date_as_un":
            assert ds[REF_RT_PLAN_SEQ].value[0].InstanceCreationDate not in ("", "20191011")


def test_unreadable_un_is_removed() -> None:
    data = _unreadable()
    out = _run(data, OPTIONS[1])
    ds = dcmread(io.BytesIO(out))
    assert ACQUISITION_MATRIX not in ds and REF_STRUCTURE_SET_SEQ not in ds
    assert _uid(77).encode() not in out
    assert ds.StudyDate not in ("", "20210304")  # the rest of the file is treated as usual


@pytest.mark.parametrize("options", OPTIONS, ids=["basic", "modified_dates"])
@pytest.mark.parametrize("path", _pydicom_un_files(), ids=lambda p: p.name)
def test_pydicom_un_files_leak_no_date_or_instance_uid(path: Path, options: list[str]) -> None:
    if not path.exists():
        pytest.skip(f"{path.name}: pydicom-data not installed")
    data = path.read_bytes()
    dates, uids = _source_values(data)
    assert uids
    out = _run(data, options)
    leaked = sorted(v.decode() for v in (dates | uids) if v in out)
    assert not leaked, leaked
    assert not _check_vrs(out), _check_vrs(out)


def test_inspect_reads_a_un_date_by_its_vr(cli, tmp_path: Path) -> None:
    path = tmp_path / "un.dcm"
    path.write_bytes(_built()["study_date_as_un"])
    line = next(ln for ln in cli("inspect", path).output.splitlines() if "Study Date" in ln)
    cells = [c.strip() for c in line.split("│")]
    assert cells[3] == "DA" and cells[4] == "shift", cells

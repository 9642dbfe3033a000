"""The date safety net: DA, DT and TM attributes that Table E.1-1 does not list.

Every DA/DT value of every output made from pydicom's own test files is compared with
every date of its source, at any depth: no source date may survive (basic profile and
retain_longitudinal_modified_dates). Planted unlisted dates check the per-option rules,
the intervals, the exempt list, nesting, kept private dates and what inspect says.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from phiscrub.keys import load_key
from phiscrub.policy.config import from_mapping
from phiscrub.transform import transform_dicom

from ..conftest import TEST_FILES

MODIFIED = "retain_longitudinal_modified_dates"
FULL = "retain_longitudinal_full_dates"
EXEMPT = {0x00080106, 0x00080107, 0x0040DB06, 0x0040DB07}  # versions of code systems, templates
DUMMIES = {"19000101", "000000"}
_D8 = re.compile(r"(?<!\d)(\d{8})")

CONTRIBUTING_EQUIPMENT = 0x0018A001  # not in Table E.1-1: kept, and entered
PURPOSE_OF_REFERENCE = 0x0040A170


def _values(ds: Dataset, vrs: tuple[str, ...], out: list, skip: frozenset = frozenset()) -> list:
    """(tag, value) for every element of these VRs, at any depth."""
    for e in ds:
        if e.VR == "SQ":
            for item in e.value or ():
                _values(item, vrs, out, skip)
        elif e.VR in vrs and int(e.tag) not in skip and e.value not in (None, ""):
            vals = e.value if isinstance(e.value, (list, MultiValue)) else [e.value]
            out += [(int(e.tag), str(v).strip()) for v in vals if str(v).strip()]
    return out


def _dates(pairs: list) -> set[str]:
    return {d for _, v in pairs for d in _D8.findall(v)} - DUMMIES


def _run(data: bytes, options: list[str], **extra):
    out = transform_dicom(data, from_mapping({"options": options, **extra}), load_key(None), "test")
    return dcmread(io.BytesIO(out.data))


def _pydicom_files() -> list[Path]:
    return sorted(p for p in TEST_FILES.rglob("*") if p.is_file())


@pytest.mark.parametrize("options", [[], [MODIFIED]], ids=["basic", "modified_dates"])
def test_no_source_date_survives_in_pydicom_files(options: list[str]) -> None:
    read = 0
    leaks: dict[str, list[str]] = {}
    for path in _pydicom_files():
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                src = dcmread(io.BytesIO(data), force=True)
                source_dates = _dates(_values(src, ("DA", "DT"), []))
                source_times = {v for _, v in _values(src, ("TM",), [])} - DUMMIES
                out = _run(data, options)
        except Exception:  # noqa: BLE001 - unreadable inputs are another test's business
            continue
        read += 1
        got = _values(out, ("DA", "DT"), [], frozenset(EXEMPT))
        bad = [f"{t:08X}" for t, v in got if set(_D8.findall(v)) & source_dates]
        if not options:  # times stay under the date options, as the listed times do
            bad += [f"{t:08X}" for t, v in _values(out, ("TM",), []) if v in source_times]
        if bad:
            leaks[path.name] = sorted(set(bad))
    assert read > 100
    assert not leaks, leaks


def _planted() -> tuple[bytes, dict[str, str]]:
    """CT_small with unlisted dates at the top, two and three deep, and an exempt one."""
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.StudyDate = "20200315"
    ds.InstanceCreationDate = "20200316"
    ds.InstanceCreationTime = "101112"
    ds.DateOfLastCalibration = "20200101"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "109101", "DCM", "Acquisition Equipment"
    code.ContextGroupVersion = "20040112000000"
    code.InstanceCreationDate = "20200317"  # three deep: equipment > purpose code > item
    equipment = Dataset()
    equipment.Manufacturer = "ACME"
    equipment.ContributionDateTime = "20200318093000"
    equipment.add_new(PURPOSE_OF_REFERENCE, "SQ", Sequence([code]))
    ds.add_new(CONTRIBUTING_EQUIPMENT, "SQ", Sequence([equipment]))
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue(), {
        "study": "20200315", "creation": "20200316", "calibration": "20200101",
        "nested": "20200317", "contribution": "20200318093000",
    }


def _days(a: str, b: str) -> int:
    return (dt.date(int(b[:4]), int(b[4:6]), int(b[6:8])) - dt.date(int(a[:4]), int(a[4:6]), int(a[6:8]))).days


def test_modified_dates_shift_unlisted_dates_with_the_patient_offset() -> None:
    data, src = _planted()
    out = _run(data, [MODIFIED])
    equipment = out[CONTRIBUTING_EQUIPMENT].value[0]
    code = equipment[PURPOSE_OF_REFERENCE].value[0]
    got = {
        "study": out.StudyDate, "creation": out.InstanceCreationDate,
        "calibration": out.DateOfLastCalibration, "nested": code.InstanceCreationDate,
        "contribution": equipment.ContributionDateTime,
    }
    offsets = {k: _days(src[k], got[k]) for k in src}
    assert len(set(offsets.values())) == 1 and offsets["study"] != 0, offsets
    assert got["contribution"][8:] == "093000"  # the time of day stays
    assert out.InstanceCreationTime == "101112"  # times stay, as the listed ones do
    assert code.ContextGroupVersion == "20040112000000"  # exempt: dates a code system


def test_full_dates_keep_unlisted_dates() -> None:
    data, src = _planted()
    out = _run(data, [FULL])
    equipment = out[CONTRIBUTING_EQUIPMENT].value[0]
    assert out.InstanceCreationDate == src["creation"] and out.DateOfLastCalibration == src["calibration"]
    assert equipment.ContributionDateTime == src["contribution"]
    assert equipment[PURPOSE_OF_REFERENCE].value[0].InstanceCreationDate == src["nested"]
    assert out.InstanceCreationTime == "101112"


def test_basic_profile_decides_by_requirement_type() -> None:
    data, _ = _planted()
    out = _run(data, [])
    equipment = out[CONTRIBUTING_EQUIPMENT].value[0]
    code = equipment[PURPOSE_OF_REFERENCE].value[0]
    # Type 3 in the CT IOD and inside the sequence: removed
    for kw in ("InstanceCreationDate", "InstanceCreationTime", "DateOfLastCalibration"):
        assert kw not in out, kw
    assert "ContributionDateTime" not in equipment and "InstanceCreationDate" not in code
    assert code.ContextGroupVersion == "20040112000000"
    assert equipment.Manufacturer == "ACME"  # the sequence itself is kept


def test_type_1_gets_a_dummy_and_type_2_an_empty_value() -> None:
    gsps = Dataset()  # Presentation Creation Date is Type 1 in a presentation state
    gsps.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"
    gsps.SOPInstanceUID, gsps.StudyInstanceUID, gsps.SeriesInstanceUID = "1.2.3.4.5", "1.2.3.4", "1.2.3.4.6"
    gsps.PatientName, gsps.Modality = "Doe^Jane", "PR"
    gsps.PresentationCreationDate, gsps.PresentationCreationTime = "20200319", "081500"
    out = _run(_bytes(gsps), [])
    assert out.PresentationCreationDate == "19000101" and out.PresentationCreationTime == "000000"
    plan = dcmread(TEST_FILES / "rtplan.dcm")  # Review Date is Type 2C in an RT Plan
    plan.ReviewDate, plan.ReviewTime = "20200320", "141500"
    out = _run(_bytes(plan), [])
    assert "ReviewDate" in out and out.ReviewDate == "" and out.ReviewTime == ""


def _bytes(ds: Dataset, implicit: bool = False) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=implicit, little_endian=True)
    return buf.getvalue()


CREATOR = "Applicare/RadWorks/Version 5.0"  # pydicom's private dictionary: (3109,xx0A) DA


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "explicit"])
def test_safe_private_dates_meet_the_net(monkeypatch: pytest.MonkeyPatch, implicit: bool) -> None:
    from phiscrub.policy import safe_private

    table = dict(safe_private._table())
    table[(CREATOR, 0x3109, 0x0A)] = "K"
    table[(CREATOR, 0x3109, 0x01)] = "K"
    monkeypatch.setattr(safe_private, "_table", lambda: table)
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.StudyDate = "20200315"
    block = ds.private_block(0x3109, CREATOR, create=True)
    block.add_new(0x0A, "DA", "20200321")
    block.add_new(0x01, "LO", "kept text")
    data = _bytes(ds, implicit)

    def private(out: Dataset, elem: int):
        return out.private_block(0x3109, CREATOR)[elem] if (0x3109, 0x0010) in out else None

    out = _run(data, ["retain_safe_private", MODIFIED])
    assert _days("20200321", private(out, 0x0A).value) == _days("20200315", out.StudyDate) != 0
    assert private(out, 0x01).value == "kept text"
    out = _run(data, ["retain_safe_private", FULL])
    assert private(out, 0x0A).value == "20200321"
    out = _run(data, ["retain_safe_private"])
    assert 0x31091000 | 0x0A not in out and private(out, 0x01).value == "kept text"
    assert b"20200321" not in _bytes(out)


def test_inspect_names_the_net_and_says_shift(cli, tmp_path: Path) -> None:
    data, _ = _planted()
    path = tmp_path / "planted.dcm"
    path.write_bytes(data)
    rows = {ln.split("│")[2].strip(): ln for ln in cli("inspect", path).output.splitlines() if ln.count("│") > 4}
    assert "shift" in rows["Instance Creation Date"] and "date safety net" in rows["Instance Creation Date"]
    assert "shift" in rows["Study Date"] and "clean" not in rows["Study Date"]
    assert "keep" in rows["Instance Creation Time"] and "date safety net" in rows["Instance Creation Time"]
    cfg = tmp_path / "basic.yaml"
    cfg.write_text("options: []\n")
    rows = {ln.split("│")[2].strip(): ln for ln in cli("inspect", path, "--config", cfg).output.splitlines()
            if ln.count("│") > 4}
    assert "remove" in rows["Instance Creation Date"] and "date safety net" in rows["Instance Creation Date"]
    assert "keep" in rows["Context Group Version"]


def test_net_rules_are_data_and_in_the_policy_digest() -> None:
    from phiscrub.policy import annex_e, date_net

    assert {"date_safety_net.yaml", "date_net_types.json"} <= set(annex_e.POLICY_FILES)
    assert date_net.net().exempt >= EXEMPT
    with pytest.raises(ValueError, match="options.retain_everything"):
        date_net.parse({"vrs": ["DA"], "options": {"retain_everything": {"DA": "K"}},
                        "by_type": {"1": "D", "2": "Z", "3": "X"}})

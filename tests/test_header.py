"""The header pass on real files: options end to end, free text, SR, codecs untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from phiscrub.demo import make_study

from .conftest import TEST_FILES


def _run(cli, tmp_path: Path, src: Path, yaml_text: str | None = None, name: str = "out"):
    args = ["deidentify", src, tmp_path / name, "-q"]
    if yaml_text is not None:
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml_text)
        args += ["--config", cfg]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    return {dcmread(p).Modality + str(i): dcmread(p) for i, p in enumerate(sorted((tmp_path / name).rglob("*.dcm")))}


def _one(outs: dict, modality: str):
    return next(v for k, v in outs.items() if k.startswith(modality))


@pytest.fixture
def study(tmp_path: Path) -> Path:
    make_study(tmp_path / "in", n_ct=1, n_mr=1)
    return tmp_path / "in"


def test_basic_profile(cli, tmp_path: Path, study: Path) -> None:
    ct = _one(_run(cli, tmp_path, study, "options: []\n"), "CT")
    assert ct.PatientName.family_name.startswith("PS") and ct.PatientID.startswith("PS")
    for kw in ("InstitutionName", "OperatorsName", "StationName", "StudyDescription",
               "OtherPatientIDsSequence", "PatientAddress", "AcquisitionDate", "PatientAge"):
        assert kw not in ct, kw
    assert ct.StudyDate == "" and ct.PatientBirthDate == ""
    assert ct.LongitudinalTemporalInformationModified == "REMOVED"
    codes = [i.CodeValue for i in ct.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert not [e for e in ct if e.tag.is_private]
    assert ct.PixelSpacing and ct.Rows == 128  # image attributes the table does not list stay


def test_longitudinal_modified_dates_keep_intervals(cli, tmp_path: Path, study: Path) -> None:
    ct = _one(_run(cli, tmp_path, study), "CT")
    assert ct.StudyDate not in ("", "20210304") and ct.StudyDate == ct.AcquisitionDate
    assert ct.StudyTime == "101500"  # times stay: whole-day offsets keep date/time pairs
    assert ct.LongitudinalTemporalInformationModified == "MODIFIED"
    assert "113107" in [i.CodeValue for i in ct.DeidentificationMethodCodeSequence]


def test_full_dates_and_retain_options(cli, tmp_path: Path, study: Path) -> None:
    ct = _one(_run(cli, tmp_path, study, "options: [retain_longitudinal_full_dates, retain_device_identity,"
                   " retain_institution_identity, retain_patient_characteristics, retain_uids]\n"), "CT")
    src = dcmread(next(study.rglob("*CT_001.dcm")))
    assert ct.StudyDate == "20210304" and ct.StationName == src.StationName
    assert ct.InstitutionName == src.InstitutionName and ct.PatientSex == "M" and ct.PatientAge == "069Y"
    assert ct.StudyInstanceUID == src.StudyInstanceUID
    codes = {i.CodeValue for i in ct.DeidentificationMethodCodeSequence}
    assert {"113106", "113109", "113112", "113108", "113110"} <= codes


def test_clean_pixel_data_recorded_not_claimed(cli, tmp_path: Path, study: Path) -> None:
    ct = _one(_run(cli, tmp_path, study, "options: [clean_pixel_data, clean_recognizable_visual_features]\n"), "CT")
    codes = {i.CodeValue for i in ct.DeidentificationMethodCodeSequence}
    assert "113101" not in codes and "113102" not in codes
    audit = (tmp_path / "out" / ".phiscrub" / "audit.jsonl").read_text()
    assert "clean_pixel_data" in audit and "clean_recognizable_visual_features" in audit


def test_clean_descriptors_keeps_medicine_removes_identity(cli, tmp_path: Path, study: Path) -> None:
    outs = _run(cli, tmp_path, study, "options: [clean_descriptors, clean_structured_content]\n")
    ct = _one(outs, "CT")
    assert "chest" in ct.StudyDescription.lower()
    for phi in ("Douglas", "Davidson", "MRN4471923", "555-867-5309", "20210304", "Whitmore"):
        for kw in ("StudyDescription", "SeriesDescription", "ImageComments", "AdditionalPatientHistory"):
            assert phi.lower() not in str(ct.get(kw, "")).lower(), (phi, kw)
    assert "Axial 5mm" in ct.SeriesDescription
    sr = _one(outs, "SR")
    text = next(i for i in sr.ContentSequence if i.ValueType == "TEXT").TextValue
    assert "nodule in the right upper lobe" in text
    assert "Davidson" not in text and "4471923" not in text and "1952" not in text
    assert "113104" in {i.CodeValue for i in sr.DeidentificationMethodCodeSequence}


def test_sr_text_without_clean_option_is_dummied(cli, tmp_path: Path, study: Path) -> None:
    sr = _one(_run(cli, tmp_path, study, "options: []\n"), "SR")
    text = next(i for i in sr.ContentSequence if i.ValueType == "TEXT").TextValue
    assert text == "ANONYMIZED"


def test_ages_over_89_are_generalised(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientAge = "093Y"
    ds.save_as(src / "a.dcm")
    outs = _run(cli, tmp_path, src, "options: [retain_patient_characteristics]\n")
    assert _one(outs, "CT").PatientAge == "090Y"


COMPRESSED = [
    "JPEG2000.dcm", "JPEG-lossy.dcm", "JPGExtended.dcm", "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "SC_rgb_jpeg_gdcm.dcm", "image_dfl.dcm",
    "MR_small_bigendian.dcm", "MR_small_implicit.dcm", "emri_small_jpeg_2k_lossless.dcm",
    "JPEGLSNearLossless_08.dcm", "SC_rgb_rle_2frame.dcm", "rtdose.dcm", "waveform_ecg.dcm",
]


@pytest.mark.parametrize("name", [n for n in COMPRESSED if (TEST_FILES / n).exists()])
def test_header_only_keeps_pixels_and_syntax(cli, tmp_path: Path, name: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    a = dcmread(TEST_FILES / name)
    if "StudyInstanceUID" not in a or "SeriesInstanceUID" not in a:
        # a codec sample without them is an incomplete instance (quarantined): give it its place
        a.StudyInstanceUID, a.SeriesInstanceUID = a.SOPInstanceUID + ".1", a.SOPInstanceUID + ".2"
        a.save_as(src / name)
    else:
        (src / name).write_bytes((TEST_FILES / name).read_bytes())
    header_only = tmp_path / "header-only.yaml"  # the default config also scans pixels for text
    header_only.write_text("options: [retain_longitudinal_modified_dates]\n")
    res = cli("deidentify", src, tmp_path / "out", "-q", "-c", header_only)
    assert res.exit_code == 0, res.output
    (out,) = list((tmp_path / "out").rglob("*.dcm"))
    b = dcmread(out)
    assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
    for kw in ("PixelData", "WaveformSequence"):
        if kw in a:
            if kw == "PixelData":
                assert a.PixelData == b.PixelData  # byte for byte, never decoded
            else:
                assert a[kw].value[0].WaveformData == b[kw].value[0].WaveformData


def test_retain_safe_private_keeps_only_listed_elements(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(TEST_FILES / "MR_small.dcm")
    block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    block.add_new(0x0C, "IS", "1000")  # B_value: listed as safe
    block.add_new(0x10, "LO", "Privname Leaky")  # not listed
    other = ds.private_block(0x0021, "ACME", create=True)
    other.add_new(0x10, "LO", "Acme Secret")
    ds.save_as(src / "a.dcm")
    for opts, expect_b in (("[]", False), ("[retain_safe_private]", True)):
        name = "o" + str(expect_b)
        outs = _run(cli, tmp_path, src, f"options: {opts}\n", name=name)
        out = _one(outs, "MR")
        private = {(e.tag.group, e.tag.element & 0xFF) for e in out if e.tag.is_private and e.tag.element > 0xFF}
        assert private == ({(0x0019, 0x0C)} if expect_b else set())
        raw = next((tmp_path / name).rglob("*.dcm")).read_bytes()
        assert b"Privname" not in raw and b"Acme Secret" not in raw
        if expect_b:
            assert out.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value == 1000
            assert "113111" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}


def test_overlays_follow_clean_graphics(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(TEST_FILES / "examples_overlay.dcm")
    ds.add_new(0x60004000, "LT", "Marked by Dr Whitmore")
    ds.PatientName = "Whitmore^Ann"
    ds.save_as(src / "a.dcm")
    basic = _run(cli, tmp_path, src, "options: []\n", name="b")
    out = next(iter(basic.values()))
    assert not [e for e in out if 0x6000 <= e.tag.group <= 0x60FF]  # the whole overlay goes
    kept = next(iter(_run(cli, tmp_path, src, "options: [clean_graphics]\n", name="g").values()))
    assert kept[0x60003000].value == ds[0x60003000].value  # overlay data kept, unchanged
    assert "Whitmore" not in kept[0x60004000].value
    assert "113103" in {i.CodeValue for i in kept.DeidentificationMethodCodeSequence}

"""Bad inputs: one line per file naming it and the reason, the run goes on, exit code 1."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from .conftest import TEST_FILES


def _corpus(d: Path) -> None:
    d.mkdir()
    shutil.copy(TEST_FILES / "CT_small.dcm", d / "good.dcm")
    (d / "notes.txt").write_text("Patient Davidson, not an image\n")
    (d / "empty.dcm").write_bytes(b"")
    data = (TEST_FILES / "MR_small.dcm").read_bytes()
    (d / "truncated.dcm").write_bytes(data[: len(data) // 2])
    # cut at an element boundary, just before the pixel data: every element parses
    ct = (TEST_FILES / "CT_small.dcm").read_bytes()
    (d / "cut_before_pixels.dcm").write_bytes(ct[: ct.rindex(b"\xe0\x7f\x10\x00")])
    # cut between two fragments of encapsulated (JPEG) pixel data
    jpeg = (TEST_FILES / "JPEG-lossy.dcm").read_bytes()
    (d / "cut_in_fragments.dcm").write_bytes(jpeg[: jpeg.rindex(b"\xfe\xff\x00\xe0")])
    # no preamble, no meta: still DICOM (implicit VR little endian raw data set)
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.SOPInstanceUID += ".2"  # another instance, not a copy of good.dcm with other content
    del ds.file_meta
    ds.preamble = None
    ds.save_as(d / "nopreamble.dcm", enforce_file_format=False, implicit_vr=True, little_endian=True)
    raw = (d / "nopreamble.dcm").read_bytes()
    assert raw[128:132] != b"DICM"
    shutil.copy(TEST_FILES / "dicomdirtests" / "DICOMDIR", d / "DICOMDIR")
    shutil.copy(TEST_FILES / "badVR.dcm", d / "badvr.dcm")
    (d / "random.bin").write_bytes(bytes(range(256)) * 8)


def test_bad_inputs_are_reported_and_quarantined(tmp_path: Path, cli) -> None:
    src = tmp_path / "in"
    _corpus(src)
    q = tmp_path / "quarantine"
    res = cli("deidentify", src, tmp_path / "out", "--quarantine", q)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.startswith(("quarantined:", "failed:"))]
    named = {Path(ln.split(": ")[1]).name: ln for ln in lines}
    for bad in ("notes.txt", "empty.dcm", "truncated.dcm", "cut_before_pixels.dcm", "cut_in_fragments.dcm",
                "random.bin"):
        assert bad in named, res.output
    assert "0 bytes" in named["empty.dcm"]
    for cut in ("truncated.dcm", "cut_before_pixels.dcm", "cut_in_fragments.dcm"):
        assert "truncat" in named[cut], named[cut]
    assert "DICOMDIR" not in named and "1 DICOMDIR dropped" in res.output  # a media index: dropped, not quarantined
    assert "good.dcm" not in named and "nopreamble.dcm" not in named
    # a reason never quotes a value from inside the file
    assert "Davidson" not in res.output
    outs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outs) >= 2  # good + no-preamble (badVR may go either way, but never crash)
    assert len(list(q.iterdir())) == len(lines)  # originals copied, under keyed names only
    assert all("." in p.name and p.suffix == ".bin" for p in q.iterdir())
    state = (tmp_path / "out" / ".phiscrub" / "audit.jsonl").read_text()
    assert str(src) not in state and "notes.txt" not in state


def test_missing_key_is_a_usage_error(tmp_path: Path, cli) -> None:
    res = cli("deidentify", TEST_FILES / "CT_small.dcm", tmp_path / "out", env={"PHISCRUB_KEY": ""})
    assert res.exit_code == 2
    assert "--generate-key" in res.output


def test_generate_key_writes_0600(tmp_path: Path, cli) -> None:
    key = tmp_path / "keys" / "phiscrub.key"
    res = cli("deidentify", TEST_FILES / "CT_small.dcm", tmp_path / "out", "--generate-key", key,
              env={"PHISCRUB_KEY": ""})
    assert res.exit_code == 0, res.output
    assert key.stat().st_mode & 0o777 == 0o600
    assert str(key) in res.output
    assert len(key.read_text().strip()) == 64


def test_bad_config_names_the_key(tmp_path: Path, cli) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("options: [retain_everything]\n")
    res = cli("deidentify", TEST_FILES / "CT_small.dcm", tmp_path / "out", "--config", cfg)
    assert res.exit_code == 2 and "options[0]" in res.output


# -- damaged files that parse (issue 15, items 4 and 7): each is quarantined with a typed,
# one-line reason naming tags or keywords, never a value; none is an internal error, none is
# taken for a storage failure, and nothing is written that pydicom cannot read back

NAME, GIVEN, MRN = "Quellmark^Ilse", "Ilse", "MRN5520917"


def _planted_ct(n: int) -> bytes:
    """CT_small with planted values, a kept sequence, and an instance UID of its own (so
    that no copy is a duplicate of another), in explicit VR little endian."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName, ds.PatientID = NAME, MRN
    ds.StudyDescription = f"Review for {GIVEN} Quellmark"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    ds.AnatomicRegionSequence = Sequence([code])  # kept by the basic profile
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{ds.SOPInstanceUID}.{n}"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _patch(data: bytes, old: bytes, new: bytes) -> bytes:
    assert data.count(old) == 1, old
    return data.replace(old, new)


def _damaged_that_parse(d: Path) -> dict[str, str]:
    """file name -> the reason it must be quarantined with."""
    d.mkdir()
    cases = {
        # a VR that does not exist, in a sequence item the policy keeps: pydicom reads it raw
        # and writes it back raw, and the output could not be read (was: written)
        "nested_bad_vr.dcm": (b"\x08\x00\x02\x01SH", b"\x08\x00\x02\x01Q\x13",
                              "(0008,0102)"),  # (named with its path when the header pass is the first to meet it)

        # Samples per Pixel with VR UL and 2 bytes: decoded by nobody on the way, unreadable after
        "kept_bad_length.dcm": (b"\x28\x00\x02\x00US\x02\x00", b"\x28\x00\x02\x00UL\x02\x00",
                                "(0028,0002): bad length"),
        # an item tag among the top-level elements (was: internal error ValueError)
        "stray_item.dcm": (b"\x10\x00\x10\x00PN", b"\xfe\xff\x00\xe0\x00\x00\x00\x00\x10\x00\x10\x00PN",
                           "stray item or delimiter tag (FFFE,E000) outside a sequence"),
        # the Study Instance UID's VR damaged (was: internal error NotImplementedError)
        "bad_vr_uid.dcm": (b"\x20\x00\x0d\x00UI", b"\x20\x00\x0d\x00ZZ", "(0020,000D) has no valid VR"),
        # Specific Character Set damaged (was: internal error ValueError)
        "bad_charset.dcm": (b"ISO_IR 100", b"ISO_IR\x00\x01\x02\x03", "(0008,0005): unknown Specific Character Set"),
    }
    reasons = {}
    for n, (name, (old, new, reason)) in enumerate(sorted(cases.items())):
        (d / name).write_bytes(_patch(_planted_ct(n), old, new))
        reasons[name] = reason
    ct = _planted_ct(len(cases))
    # the file ends inside a sequence, in an item's header: pydicom raises OSError, which
    # was taken for a storage failure ("storage unavailable")
    cut = ct[: ct.rindex(b"\xe0\x7f\x10\x00")] + b"\x99\x00\x10\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff"
    (d / "item_header_cut.dcm").write_bytes(cut)
    reasons["item_header_cut.dcm"] = "truncated or malformed data element stream"
    # cut at the element boundary before the patient's name: what is left reads as sound,
    # has no Study or Series Instance UID, and a description that names the patient (was:
    # written under study-unknown/series-unknown, the name left in the description)
    ct = _planted_ct(len(cases) + 1)
    (d / "cut_before_name.dcm").write_bytes(ct[: ct.index(b"\x10\x00\x10\x00PN")])
    reasons["cut_before_name.dcm"] = "incomplete instance: no StudyInstanceUID, SeriesInstanceUID"
    shutil.copy(TEST_FILES / "CT_small.dcm", d / "good.dcm")
    return reasons


def test_damaged_files_that_parse_are_quarantined_with_typed_reasons(tmp_path: Path, cli) -> None:
    from .conftest import scan_tree

    src, dst, q = tmp_path / "in", tmp_path / "out", tmp_path / "q"
    reasons = _damaged_that_parse(src)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("options: [clean_descriptors, retain_longitudinal_modified_dates]\n")
    res = cli("deidentify", src, dst, "--quarantine", q, "--config", cfg, "--workers", "1")
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith(("quarantined:", "failed:"))]
    named = {Path(ln.split(": ")[1]).name: ln for ln in lines}
    for name, reason in reasons.items():
        assert name in named, res.output
        assert named[name].startswith("quarantined:") and reason in named[name], named[name]
    assert "good.dcm" not in named
    assert "internal error" not in res.output and "storage" not in res.output
    outs = [p for p in dst.rglob("*.dcm")]
    assert len(outs) == 1 and "unknown" not in str(outs[0])
    for elem in dcmread(outs[0]).iterall():
        _ = elem.value
    assert len(list(q.iterdir())) == len(reasons)
    planted = [NAME, "Quellmark", GIVEN + " Quellmark", MRN]
    assert not scan_tree(dst, planted)
    assert not [p for p in planted if p in res.output]


def test_input_errors_name_the_tag_never_the_value() -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.tag import Tag

    from phiscrub.dicom.reader import input_error
    from phiscrub.errors import CorruptFile

    ds = Dataset()
    ds._dict[Tag(0x00100010)] = RawDataElement(Tag(0x00100010), "ZZ", 9, b"Quellmark", 0, False, True)
    ds._dict[Tag(0x00280010)] = RawDataElement(Tag(0x00280010), "US", 9, b"Quellmark", 0, False, True)
    for tag, expect in ((0x00100010, "cannot decode data element (0010,0010): invalid VR"),
                        (0x00280010, "cannot decode data element (0028,0010): bad length")):
        with pytest.raises(Exception) as info:  # noqa: PT011 - pydicom's own types, whichever they are
            _ = ds[tag].value
        typed = input_error(info.value)
        assert isinstance(typed, CorruptFile) and str(typed) == expect
        assert "Quellmark" not in str(typed)
    assert "Quellmark" in _chain(info.value)  # pydicom's message quotes the value; ours does not
    # an error that did not rise inside pydicom is ours: it stays an internal error
    try:
        raise ValueError("a bug of ours, (0010,0010) in tag (0010,0010)")
    except ValueError as e:
        assert input_error(e) is None


def _chain(e: BaseException | None) -> str:
    out = ""
    while e is not None:
        out += str(e)
        e = e.__cause__ or e.__context__
    return out


def test_a_kept_element_cut_short_deep_in_a_sequence_is_not_written(tmp_path: Path) -> None:
    """A damaged VR in an item's first element: pydicom reads the item as implicit VR, and the
    element's length runs past the item's end; pydicom hands back what there was."""
    from phiscrub.errors import CorruptFile
    from phiscrub.keys import load_key
    from phiscrub.policy.config import from_mapping
    from phiscrub.transform import transform_dicom

    data = _patch(_planted_ct(0), b"\x08\x00\x00\x01SH", b"\x08\x00\x00\x01Q\x13")
    with pytest.raises(CorruptFile, match=r"^truncated: data element \(0008,2218\) > item 1 > \(0008,0100\) runs past"):
        transform_dicom(data, from_mapping({}), load_key(None), "test")

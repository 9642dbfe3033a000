"""Leak test generated from the Annex E table: plant a distinct value in every attribute the
table removes or replaces (top level, nested two deep, and in private blocks), run the
CLI, and scan every output byte and path for every value, upper and lower case, and each
person-name component on its own."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from phiscrub.policy import annex_e

from .conftest import TEST_FILES, scan_tree

STRING_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "DA", "DT", "UI", "UR"}
KEPT_SEQUENCE = 0x00082218  # Anatomic Region Sequence: not in the table, so kept and recursed


def _value(vr: str, i: int) -> str:
    return {
        "PN": f"Lkfam{i:03d}q^Lkgiv{i:03d}q",
        "DA": f"{1901 + i % 97:04d}{1 + i % 12:02d}{1 + i % 27:02d}",
        "DT": f"{1901 + i % 97:04d}{1 + i % 12:02d}{1 + i % 27:02d}131415",
        "UI": f"1.2.826.0.1.3680043.10.543.{9000 + i}.77",
        "SH": f"LKS{i:03d}QZW",
        "AE": f"LKA{i:03d}QZW",
        "UR": f"http://leak{i:03d}.example/q",
    }.get(vr, f"Leak value {i:03d} QZWX")


def _plantable() -> list[tuple[int, str]]:
    out = []
    for tag, row in sorted(annex_e.exact_rows().items()):
        if row.basic == "K" or tag >> 16 in (0x0000, 0x0002) or not dictionary_has_tag(tag):
            continue
        vr = dictionary_VR(tag)
        if vr in STRING_VRS or vr == "SQ":
            out.append((tag, vr))
    return out


def _plant(ds: Dataset, planted: list[str], offset: int) -> None:
    for i, (tag, vr) in enumerate(_plantable()):
        n = offset + i
        if vr == "SQ":
            item = Dataset()
            v = _value("PN", n)
            item.PersonName = v
            item.add_new(0x00100020, "LO", f"Leak seq id {n:03d} QZWX")
            planted += [v, *v.split("^"), f"Leak seq id {n:03d} QZWX"]
            ds.add_new(tag, "SQ", Sequence([item]))
        else:
            v = _value(vr, n)
            ds.add_new(tag, vr, v)
            planted.append(v)
            if vr == "PN":
                planted += v.split("^")


def make_planted_file(path: Path) -> list[str]:
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    planted: list[str] = []
    for tag in [t for t in ds.keys() if t.is_private]:
        del ds[tag]
    _plant(ds, planted, 0)
    # nested: the same kinds of attributes inside a kept sequence, two levels down
    outer, inner = Dataset(), Dataset()
    _plant(inner, planted, 1000)
    outer.AnatomicRegionModifierSequence = Sequence([inner])
    _plant(outer, planted, 2000)
    ds.add_new(KEPT_SEQUENCE, "SQ", Sequence([outer]))
    # private blocks, with a nested private sequence
    block = ds.private_block(0x0029, "LEAKY VENDOR", create=True)
    for j, vr in enumerate(("LO", "SH", "LT", "PN", "UT")):
        v = _value(vr, 3000 + j)
        block.add_new(0x10 + j, vr, v)
        planted.append(v)
    sub = Dataset()
    sub.PatientName = "Privfam^Privgiv"
    planted += ["Privfam^Privgiv", "Privfam", "Privgiv"]
    block.add_new(0x20, "SQ", Sequence([sub]))
    # overlay comments and curve data (60xx, 50xx)
    # (kept and cleaned under clean_graphics, so they carry the patient's name to clean)
    ds.PatientName = "Davidson^Douglas"
    ds.add_new(0x60004000, "LT", "Overlay drawn for Douglas Davidson")
    ds.add_new(0x50000022, "LO", "Curve of DAVIDSON, Douglas")
    ds.save_as(path, enforce_file_format=True)
    return planted


@pytest.mark.parametrize("options", [None, [], ["clean_graphics"]], ids=["default", "basic", "graphics"])
def test_no_planted_value_survives(tmp_path: Path, cli, options) -> None:
    src = tmp_path / "Douglas_Davidson_CT"
    src.mkdir()
    planted = make_planted_file(src / "Davidson_Douglas.dcm")
    assert len(_plantable()) > 250  # generated from the table, not a hand-picked few
    args = ["deidentify", src, tmp_path / "out", "-q"]
    if options is not None:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"options: {options}\n")
        args += ["--config", cfg]
    res = cli(*args)
    assert res.exit_code == 0, res.output
    outputs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outputs) == 1
    hits = scan_tree(tmp_path / "out", planted + ["Douglas", "Davidson"])
    assert hits == {}


def test_verifier_quarantines_what_the_policy_let_through(tmp_path: Path, cli) -> None:
    """A keep override on a removed attribute is the user's choice, but the verifier still
    refuses to release a file whose removed-by-profile values show up elsewhere."""
    src = tmp_path / "in"
    src.mkdir()
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "Secretfam^Secretgiv"
    ds.ImageComments = "Seen by Secretfam today"  # kept by override below: a leak of the name
    ds.save_as(src / "a.dcm")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("tags:\n  - {select: ImageComments, action: keep}\n")
    res = cli("deidentify", src, tmp_path / "out", "-q", "--config", cfg)
    assert res.exit_code == 1
    assert "quarantined" in res.output
    assert not list((tmp_path / "out").rglob("*.dcm"))
    assert scan_tree(tmp_path / "out", ["Secretfam", "Secretgiv"]) == {}


def test_copy_is_deep() -> None:
    assert copy.deepcopy(Dataset()) == Dataset()


def test_verifier_reads_through_deflate(tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    from phiscrub.pipeline.verify import Probe, verify_output

    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "Hiddenfam^Hiddengiv"
    ds.PatientIdentityRemoved = "YES"
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "d.dcm", enforce_file_format=True)
    data = (tmp_path / "d.dcm").read_bytes()
    assert b"Hiddenfam" not in data  # compressed on disk
    assert verify_output(data, "x/y.dcm", Probe(frozenset({b"hiddenfam"})))
    assert not verify_output(data, "x/y.dcm", Probe(frozenset({b"elsewhere"})))


def test_verifier_matches_words_not_fragments() -> None:
    from phiscrub.pipeline.verify import _found

    assert not _found(b"mary", b"original\\primary")
    assert _found(b"mary", b"seen: mary, 3pm")
    assert _found(b"12345", b"id12345")
    assert not _found(b"12345", b"2.25.881234567")
    assert _found(b"ab-12", b"xxab-12yy")

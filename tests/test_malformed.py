"""Bad inputs: one line per file naming it and the reason, the run goes on, exit code 1."""

from __future__ import annotations

import shutil
from pathlib import Path

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
                "DICOMDIR", "random.bin"):
        assert bad in named, res.output
    assert "0 bytes" in named["empty.dcm"]
    for cut in ("truncated.dcm", "cut_before_pixels.dcm", "cut_in_fragments.dcm"):
        assert "truncat" in named[cut], named[cut]
    assert "DICOMDIR" in named["DICOMDIR"]
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

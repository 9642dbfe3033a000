"""dicom3tools' dciodvfy must report no error on an output that it did not report on the
input it came from (values such as UIDs are masked before comparing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from phiscrub.demo import make_study

from .conftest import TEST_FILES

DCIODVFY = shutil.which("dciodvfy")
FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtstruct.dcm", "rtdose.dcm", "test-SR.dcm",
         "waveform_ecg.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "emri_small.dcm", "MR_small_RLE.dcm"]


def _errors(path: Path) -> set[str]:
    res = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (res.stdout + res.stderr).splitlines()
    out = set()
    for ln in lines:
        if ln.startswith("Error"):
            ln = re.sub(r"\b\d+(\.\d+){2,}\b", "<uid>", ln)  # UIDs differ by design
            ln = re.sub(r'"[^"]*"', '"<value>"', ln)
            out.add(ln.strip())
    return out


@pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools not installed (.ci/run installs it)")
def test_no_new_dciodvfy_errors(tmp_path: Path, cli) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for f in FILES:
        if (TEST_FILES / f).exists():
            shutil.copy(TEST_FILES / f, src / f)
    make_study(src, n_ct=1, n_mr=1)
    sources = sorted(p for p in src.rglob("*") if p.is_file())
    assert len(sources) >= 10
    for i, source in enumerate(sources):
        out_dir = tmp_path / f"out{i}"
        res = cli("deidentify", source, out_dir, "-q", "-j", "1")
        assert res.exit_code == 0, res.output
        (out,) = list(out_dir.rglob("*.dcm"))
        new = _errors(out) - _errors(source)
        assert not new, (source.name, sorted(new))

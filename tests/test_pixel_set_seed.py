"""The labelled burned-in text set of bench/pixel_set.py, built with a seed other than the
bench's own (7, which the detection settings were measured on), must come out with every
PHI field covered in sensitive mode, the default for ultrasound and screen captures. This
set (seed 13) is where faint PHI beside a bright label was once left legible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FONTS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/truetype/liberation2")


@pytest.mark.slow
def test_every_phi_field_covered_on_an_unseen_seed(tmp_path: Path) -> None:
    if not all(p.exists() for p in FONTS):
        pytest.skip("fonts-dejavu and fonts-liberation2 are needed to build the set")
    out = tmp_path / "set"
    subprocess.run([sys.executable, str(ROOT / "bench" / "pixel_set.py"), "--out", str(out), "--seed", "13"],
                   check=True, capture_output=True, cwd=ROOT)
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_pixels.py"), "--out", str(out), "--modes", "sensitive",
                          "--skip-presidio", "--no-pool"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "results.json").read_text())["phiscrub (sensitive)"]["summary"]
    assert summary["errors"] == 0, summary["notes"]
    assert summary["phi_recall"] == 1.0 and summary["clean_rate"] == 1.0, summary
    # ink boxes keep the labels beside PHI lines (0.965 measured; line boxes kept 0.915)
    assert summary["non_phi_kept"] >= 0.95, summary

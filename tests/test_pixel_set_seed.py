"""The labelled burned-in text set of bench/pixel_set.py, built with seeds other than the
bench's own (7, which the detection settings were measured on), must come out with every
PHI field covered: in sensitive mode, the default for ultrasound and screen captures, on
seed 13 (where faint PHI beside a bright label was once left legible), and in 'all' mode
on seed 17 (where faint line ends over anatomy were)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FONTS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"), Path("/usr/share/fonts/truetype/liberation2")


def _scored(tmp_path: Path, seed: int, mode: str) -> dict:
    """Build the set with ``seed`` and score phiscrub's ``mode`` on it (summary dict)."""
    if not all(p.exists() for p in FONTS):
        pytest.skip("fonts-dejavu and fonts-liberation2 are needed to build the set")
    out = tmp_path / "set"
    subprocess.run([sys.executable, str(ROOT / "bench" / "pixel_set.py"), "--out", str(out), "--seed", str(seed)],
                   check=True, capture_output=True, cwd=ROOT)
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_pixels.py"), "--out", str(out), "--modes", mode,
                          "--skip-presidio", "--no-pool"], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((out / "results.json").read_text())[f"phiscrub ({mode})"]["summary"]
    assert summary["errors"] == 0, summary["notes"]
    return summary


@pytest.mark.slow
def test_every_phi_field_covered_on_an_unseen_seed(tmp_path: Path) -> None:
    summary = _scored(tmp_path, 13, "sensitive")
    assert summary["phi_recall"] == 1.0 and summary["clean_rate"] == 1.0, summary
    # ink boxes keep the labels beside PHI lines (0.965 measured; line boxes kept 0.915)
    assert summary["non_phi_kept"] >= 0.95, summary


@pytest.mark.slow
def test_all_mode_covers_the_faint_line_ends_the_detector_stops_short_of(tmp_path: Path) -> None:
    """Seed 17: two lines fade onto anatomy ("... Associate|s", "Born 1934-01|-21") and the
    detector's boxes stop short; 'all' mode reads such lines and completes the values they
    stop inside (clean rate was 0.92 before)."""
    summary = _scored(tmp_path, 17, "all")
    assert summary["phi_recall"] == 1.0 and summary["clean_rate"] == 1.0, summary
    # the clip saved as 30 single images: every one comes out (a rate, not NaN). Its toolbar's
    # icons between faint words took two rounds of added boxes, and 4 images were quarantined
    # when only one round was allowed.
    rate = summary["series_images_per_s"]
    assert rate == rate, summary

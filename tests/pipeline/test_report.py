"""`phiscrub report`: one self-contained page, screenshotted in headless Chromium, holding
no planted value and fetching nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.pipeline.jobs import make_job, rules_config, scan_tree
from tests.screenshots import HAS_CHROMIUM, screenshot


def _job(cli, tmp_path: Path):
    cfg = rules_config(tmp_path)
    src = tmp_path / "in"
    src.mkdir()
    (src / "Davidson_scan_notes.dcm").write_bytes(b"not a dicom file at all" * 10)  # quarantined
    _, dst, planted, res = make_job(cli, tmp_path, "--quarantine", tmp_path / "q", config=cfg)
    assert res.exit_code == 1, res.output  # the junk file is quarantined
    return dst, planted + ["Davidson_scan_notes"]


def test_report_is_self_contained_and_holds_no_value(cli, tmp_path: Path) -> None:
    dst, planted = _job(cli, tmp_path)
    out = tmp_path / "report.html"
    res = cli("report", dst, "--out", out)
    assert res.exit_code == 0, res.output
    html = out.read_text()
    # nothing to fetch: only data: URIs, and a CSP that forbids any other source
    assert not re.search(r"""(?:src|href)\s*=\s*['"](?!data:)""", html)
    assert "url(" not in html and "@import" not in html and "<script" not in html.lower()
    assert not re.search(r"https?://(?!www.w3.org/2000/svg')", html)
    assert "default-src 'none'" in html
    # what the page must show
    assert "<b>4</b>done" in html and "<b>1</b>quarantined" in html
    assert html.count("<rect x=") >= 2 * 2 + 8  # two boxes on each CT thumbnail, plus the chart bars
    assert "data:image/png;base64," in html and ">CT<" in html and ">SR<" in html
    assert "person-name" in html and "burned-in-text:" in html
    # no planted value and no source file name in any byte of the page
    (tmp_path / "scan").mkdir()
    shutil.copy(out, tmp_path / "scan" / "r.html")
    assert scan_tree(tmp_path / "scan", planted) == {}


@pytest.mark.skipif(not HAS_CHROMIUM, reason="needs the Debian package chromium (CI installs it)")
def test_report_screenshot_in_headless_chromium(cli, tmp_path: Path) -> None:
    import numpy as np

    dst, planted = _job(cli, tmp_path)
    assert cli("report", dst).exit_code == 0
    img = screenshot(dst / ".phiscrub" / "report.html", tmp_path, 1200, 1900, "report_screenshot.png")
    # the red box outlines were drawn over the thumbnails (BGR of #ff2d55)
    red = np.all(np.abs(img.astype(int) - (85, 45, 255)) < 40, axis=2).sum()
    assert red > 200, red
    # and a thumbnail shows image content (grey levels other than page white and text)
    assert len(np.unique(img[..., 0])) > 64
    assert scan_tree(dst / ".phiscrub", planted) == {}

"""A page as a browser draws it: headless Chromium (the Debian package CI installs), for
the tests that check a compliance officer's pages (the report, the dashboard) look right."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HAS_CHROMIUM = shutil.which("chromium") is not None


def screenshot(page: Path, work: Path, width: int, height: int, keep_as: str) -> np.ndarray:
    """The page drawn at width x height, as a BGR image, checked to be a real, non-blank
    PNG of that size; a copy is kept as bench/out/``keep_as`` (git-ignored) for people to see."""
    import cv2

    shot = work / "shot.png"
    proc = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         f"--user-data-dir={work / 'profile'}", f"--window-size={width},{height}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (height, width)
    assert float(img.std()) > 10  # not blank
    keep = ROOT / "bench" / "out"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / keep_as)
    return img

"""Makes the pictures of the README and the docs that are not copied from bench/img.

- ``img/report.png``: ``phiscrub report`` of a job on synthetic data only, drawn by headless
  Chromium (the Debian package ``chromium``): the demo study (pydicom's CT and MR test
  images with planted, made-up PHI), the axial CT of ``img/burned_in_ct.png`` (a made-up
  patient block burned across the body), openslide-python's public test slide
  ``tests/data/real_slides/aperio-small.svs`` (see its SOURCES.md) and a file that is not
  DICOM (quarantined). Default config, a throwaway key.

Copied as they are: ``img/burned_in_ct.png`` and ``img/burned_in_us.png`` are
bench/img/screen_axial.png and bench/img/heldout.png (made by bench/pictures.py: synthetic
text on pydicom's CT_small and on the held-out generator's Doppler ultrasound).

    python docs/pictures.py
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"


def _job(work: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.pixels.test_screen import _axial

    from phiscrub.demo import make_study

    scans = work / "scans"
    make_study(scans)
    ds, _ = _axial(True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    (scans / "axial_with_text.dcm").write_bytes(buf.getvalue())
    shutil.copy(ROOT / "tests" / "data" / "real_slides" / "aperio-small.svs", scans / "biopsy.svs")
    (scans / "notes.dcm").write_bytes(b"not a DICOM file" * 8)
    env = {**os.environ, "PHISCRUB_KEY": "docs-picture-key-0123456789abcdef"}
    deid = work / "deid"
    subprocess.run([sys.executable, "-m", "phiscrub", "deidentify", str(scans), str(deid), "-q"], env=env, check=False)
    subprocess.run([sys.executable, "-m", "phiscrub", "report", str(deid)], env=env, check=True)
    return deid / ".phiscrub" / "report.html"


def report(work: Path, width: int = 1100, height: int = 2060) -> None:
    page = _job(work)
    shot = work / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                    f"--user-data-dir={work / 'profile'}", f"--window-size={width},{height}", f"--screenshot={shot}",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    import cv2

    img = cv2.imread(str(shot))
    cv2.imwrite(str(OUT / "report.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report(Path(tmp))
    print(f"docs/img/report.png: {(OUT / 'report.png').stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

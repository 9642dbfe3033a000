"""Burned-in text on REAL images (not made by this project) is gone after `phiscrub deidentify`,
read back by Tesseract, an OCR independent of phiscrub's own (RapidOCR/ONNX).

Per image and per configuration: the tokens of the ORIGINAL header (patient name, IDs,
accession, birth date in its burned-in forms, institution words) that Tesseract reads in the
input must be readable there for the images in READABLE (so the test can fail when
de-identification does nothing), and none of the header's tokens, nor a cut-off form of one
read in the input, may be readable in the output or present in the output's header bytes.

Images: tests/data/real (sources and licences in SOURCES.md), /work/shared/real-data (skipped
when absent) and the deid-data package's ultrasounds (skipped when absent)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from tests.conftest import KEY
from tests.pixels.tesseract import available, first_frame, phi_tokens, read_text, tokens, truncated_phi

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="tesseract is not installed (apt-get install tesseract-ocr; see .ci/install)"),
]

DATA = Path(__file__).parents[1] / "data" / "real"
SHARED = Path(__file__).parents[2].parent / "shared" / "real-data"


def _deid_data_dir() -> Path | None:
    try:
        import deid_data
    except ImportError:
        return None
    return Path(os.path.dirname(deid_data.__file__)) / "data" / "ultrasounds"


ULTRASOUNDS = _deid_data_dir()

# name -> (folder, why it would be absent)
CASES: dict[str, tuple[Path | None, str]] = {
    "presidio-2_ORIGINAL.dcm": (DATA, "tests/data/real is part of the repo"),
    "presidio-0_ORIGINAL_compressed.dcm": (SHARED, f"shared real data folder {SHARED} is absent"),
    "presidio-RGB_ORIGINAL.dcm": (SHARED, f"shared real data folder {SHARED} is absent"),
    "GREYSCALE_IMAGE.dcm": (ULTRASOUNDS, "the deid-data package (a test extra) is not installed"),
    "RGB_IMAGE.dcm": (ULTRASOUNDS, "the deid-data package (a test extra) is not installed"),
}

# Images whose burned-in text shows header PHI to a human looking at them (checked by eye on
# an 8-bit render): the name and DOB on the CT localizer and on the radiograph, the name,
# DOB, accession and institution on the ultrasound screens. presidio-RGB_ORIGINAL.dcm has no
# burned-in text at all, so it only checks that nothing appears and the header is clean.
READABLE = {"presidio-2_ORIGINAL.dcm", "presidio-0_ORIGINAL_compressed.dcm", "GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm"}

# "default": no config at all. "clean_pixel_data": the option asked for explicitly.
CLEAN_CONFIG = "options: [clean_pixel_data]\npixels: {text_redaction: auto}\n"
VARIANTS = ("default", "clean_pixel_data")


def _path(name: str) -> Path:
    folder, why = CASES[name]
    if folder is None or not (folder / name).is_file():
        pytest.skip(f"{name}: {why}")
    return folder / name


@cache
def _read_input(path: Path) -> str:
    return read_text(*first_frame(dcmread(path)))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHISCRUB_")}
    return {**env, "PHISCRUB_KEY": KEY}


def _deidentify(src_file: Path, tmp_path: Path, variant: str) -> Path:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(src_file, src / src_file.name)
    cmd = [sys.executable, "-m", "phiscrub", "deidentify", str(src), str(out), "-q", "-j", "1"]
    if variant == "clean_pixel_data":
        cfg = tmp_path / "config.yaml"
        cfg.write_text(CLEAN_CONFIG)
        cmd += ["-c", str(cfg)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False)
    assert proc.returncode == 0, f"phiscrub exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    outs = [p for p in out.rglob("*") if p.is_file() and ".phiscrub" not in p.relative_to(out).parts]
    assert len(outs) == 1, f"expected one output for one input, got {outs}\n{proc.stderr}"
    return outs[0]


def _header_bytes(path: Path) -> bytes:
    """The output file's bytes with the pixel data's value cut out, upper-cased."""
    raw = path.read_bytes()
    ds = dcmread(path)
    if "PixelData" in ds:
        raw = raw.replace(ds.PixelData, b"")
    return raw.upper()


def _word(token: str) -> re.Pattern[bytes]:
    """token as a whole word: 'MARY' in 'ZZZDOWNTIME^MARY^^' but not in ImageType's 'PRIMARY'."""
    return re.compile(rb"(?<![A-Z0-9])" + re.escape(token.encode("latin-1", "ignore")) + rb"(?![A-Z0-9])")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", list(CASES))
def test_burned_in_phi_is_not_readable_after_deidentify(name: str, variant: str, tmp_path: Path) -> None:
    src_file = _path(name)
    original = dcmread(src_file)
    phi = phi_tokens(original)
    assert phi, "the original header holds no PHI to look for"

    read_in = tokens(_read_input(src_file))
    found_in = phi & read_in
    if name in READABLE:
        assert found_in, f"Tesseract reads none of {sorted(phi)} in the input; text: {_read_input(src_file)!r}"
    # what the screen shows, cut off ("CLEVELAN..") counts as well
    banned = phi | found_in | truncated_phi(read_in, phi)

    out_file = _deidentify(src_file, tmp_path, variant)
    out_ds = dcmread(out_file)
    out_text = read_text(*first_frame(out_ds))
    in_pixels = sorted(banned & tokens(out_text))
    header = _header_bytes(out_file)
    in_header = sorted(t for t in banned if len(t) >= 4 and _word(t).search(header))

    assert not in_pixels and not in_header, (
        f"{name} [{variant}]: read in the input {sorted(found_in)}; "
        f"still readable in the output's pixels {in_pixels}; in the output's header {in_header}; "
        f"output text: {' '.join(out_text.split())!r}"
    )
    _assert_only_boxes_changed(original, out_ds, _recorded_boxes(tmp_path / "out"), name)


def _recorded_boxes(out: Path) -> list[dict]:
    """The pixel boxes the run's audit recorded for its one item."""
    records = [json.loads(x) for x in (out / ".phiscrub" / "audit.jsonl").read_text().splitlines() if x.strip()]
    items = [r for r in records if "pixel_boxes" in r]
    assert len(items) == 1, f"expected one item record, got {len(items)}"
    return list(items[0]["pixel_boxes"] or [])


def _assert_only_boxes_changed(src, out, boxes: list[dict], name: str) -> None:
    """Issue 16 step 7: every decoded pixel outside the recorded boxes is the input's."""
    a, b = src.pixel_array, out.pixel_array
    assert a.shape == b.shape, name
    keep = np.ones(a.shape[:-1] if a.ndim == 4 or (a.ndim == 3 and src.get("SamplesPerPixel", 1) > 1) else a.shape,
                   dtype=bool)
    frames = keep.ndim == 3
    for box in boxes:
        ys, xs = slice(max(0, box["y"]), box["y"] + box["h"]), slice(max(0, box["x"]), box["x"] + box["w"])
        if frames:
            keep[(slice(None) if box.get("frame") is None else box["frame"]), ys, xs] = False
        else:
            keep[ys, xs] = False
    assert np.array_equal(a[keep], b[keep]), f"{name}: pixels outside the recorded boxes changed"

"""An OCR reader independent of phiscrub's own (RapidOCR/ONNX): the `tesseract` binary, called
with subprocess. Used to read burned-in text back from real images before and after
de-identification, so that the check does not share the blind spots of the engine that found
the text in the first place. Not a test module."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

# Page segmentation 11 ("sparse text, in no particular order"). On the five real images the
# test reads (tests/data/real/SOURCES.md), with the 2x upscale: psm 11 and psm 3 (auto) each
# read 18 of the header's tokens, psm 6 (one uniform block) 17 and ~4x slower on the 2140-wide
# radiograph. 11 is meant for text scattered in corners, as burned-in text is.
PSM = 11
# Frames whose longer side is at most this are upscaled 2x: burned-in text on modality screens
# and radiographs is 10-20 px high, below what tesseract reads well (without it, on the
# 2140x1760 radiograph psm 3 reads neither the name nor the DOB, psm 11 only the surname).
UPSCALE_MAX_SIDE = 2560


def available() -> bool:
    return shutil.which("tesseract") is not None


def to_uint8(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """One decoded frame (rows x cols, or rows x cols x 3) as 8-bit grey or BGR for OpenCV."""
    photometric = (photometric or "").upper()
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[-1] == 3:
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            a = convert_color_space(a, photometric, "RGB")
        if a.dtype != np.uint8:
            a = _stretch(a)
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2BGR)
    if a.ndim != 2:
        raise ValueError(f"expected one frame, got shape {a.shape}")
    grey = a if a.dtype == np.uint8 else _stretch(a)
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    return np.ascontiguousarray(grey)


def _stretch(a: np.ndarray) -> np.ndarray:
    """Map the frame's own min..max onto 0..255 (burned-in text is usually the brightest)."""
    f = a.astype(np.float64)
    lo, hi = float(f.min()), float(f.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.clip((f - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def read_text(pixels: np.ndarray, photometric: str, psm: int = PSM, timeout: float = 120) -> str:
    """Everything tesseract reads in one decoded DICOM frame."""
    img = to_uint8(pixels, photometric)
    if max(img.shape[:2]) <= UPSCALE_MAX_SIDE:
        img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.png"
        if not cv2.imwrite(str(path), img):
            raise RuntimeError("could not write the frame as PNG")
        proc = subprocess.run(
            ["tesseract", str(path), "stdout", "--psm", str(psm), "-l", "eng"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"tesseract failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def tokens(text: str) -> set[str]:
    """Upper-cased alphanumeric tokens of length >= 3. Separators that sit inside dates
    (/ - .) are kept so that 08/29/1951 stays one token, and the date's digits joined
    (08291951) are added too."""
    out: set[str] = set()
    for raw in re.findall(r"[A-Za-z0-9]+(?:[/.\-][A-Za-z0-9]+)*", text):
        up = raw.upper()
        for t in {up, re.sub(r"[/.\-]", "", up), *re.split(r"[/.\-]", up)}:
            if len(t) >= 3:
                out.add(t)
    return out


def _date_forms(value: str) -> set[str]:
    """A DICOM DA (YYYYMMDD) in the forms burned-in text takes."""
    m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", value.strip())
    if not m:
        return {value.strip()} if value.strip() else set()
    y, mo, d = m.groups()
    forms = {
        f"{y}{mo}{d}", f"{mo}/{d}/{y}", f"{d}/{mo}/{y}", f"{y}-{mo}-{d}", f"{y}/{mo}/{d}", f"{d}.{mo}.{y}", f"{mo}.{d}.{y}",
        f"{int(mo)}/{int(d)}/{y}", f"{int(d)}/{int(mo)}/{y}",
    }
    return forms | {f.replace("/", "").replace("-", "").replace(".", "") for f in forms}


def _values(ds: Dataset, keyword: str) -> list[str]:
    v = ds.get(keyword)
    if v is None or v == "":
        return []
    if isinstance(v, MultiValue):
        return [str(x) for x in v if str(x)]
    return [str(v)]


def phi_tokens(ds: Dataset) -> set[str]:
    """Tokens of the ORIGINAL header that must not be readable in a de-identified frame:
    PatientName components, PatientID, OtherPatientIDs, AccessionNumber, PatientBirthDate
    in its burned-in forms, InstitutionName words of length >= 4. Each upper-cased; tokens
    shorter than 3 characters are dropped."""
    out: set[str] = set()
    for name in _values(ds, "PatientName"):
        out |= {w.upper() for w in re.split(r"[\^\s,]+", name)}
    for kw in ("PatientID", "OtherPatientIDs", "AccessionNumber"):
        for v in _values(ds, kw):
            out.add(v.strip().upper())
    for v in _values(ds, "PatientBirthDate"):
        out |= _date_forms(v)
    for v in _values(ds, "InstitutionName"):
        out |= {w.upper() for w in re.split(r"[^A-Za-z0-9]+", v) if len(w) >= 4}
    return {t for t in out if len(t) >= 3}


def truncated_phi(read: set[str], phi: set[str], min_len: int = 5) -> set[str]:
    """Tokens read from a frame that are a cut-off PHI token: screens shorten long fields
    ("ZZZ TEST PATIENTFI..", "CCHS CLEVELAN.."). At least min_len characters, a strict
    prefix of a token in phi."""
    return {t for t in read if len(t) >= min_len and any(p != t and p.startswith(t) for p in phi)}


def first_frame(ds: Dataset) -> tuple[np.ndarray, str]:
    """The first decoded frame and the photometric interpretation its values are in.
    pydicom's pixel_array already converts YBR to RGB."""
    a = ds.pixel_array
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        a = a[0]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("YBR") and a.ndim == 3:
        photometric = "RGB"
    return a, photometric

"""Builds a labelled set of DICOM files with burned-in text, to measure text redaction.

Why synthetic: real images with burned-in PHI cannot be shared, and a redactor can only be
scored against exact ground truth: where every character is, which text is PHI and which
is not (orientation markers, probe frequency, depth). So this script burns text with real
TrueType fonts (Debian fonts-dejavu and fonts-liberation2) into real images (pydicom's
bundled test files, upscaled to 512x512), writes the same PHI into the header (so a
"sensitive" redactor that matches header values has something to match) and records every
burned field in labels.json: its text, kind, pixel box, per-character boxes and frames.

The set spans what a redactor meets in practice: CT/MR 16-bit signed, 12-bit MR, 8-bit
grey, RGB, YBR and palette ultrasound; uncompressed, RLE, JPEG baseline, JPEG 2000 and
JPEG-LS; single frames and a 30-frame cine clip whose clock and counter change per frame;
font sizes 12-28 px; corners, edges and the middle; bright, low-contrast and dark-on-light
text.

Label conventions (labels.json):
- box and char boxes are [x0, y0, x1, y1], half-open, x = column, y = row, tight around the
  visible ink burned: anti-aliased pixels of at least 25% coverage (fainter edge pixels
  blend into the background and carry nothing legible);
- frames is [first, stop): the field is burned in frames first..stop-1;
- kind is "phi" (must be removed in every mode), "non-phi" (should be kept in sensitive
  mode) or "label" (a caption such as "DOB:" before a value: scored neither way);
- preexisting_text lists boxes of text the source image already had (the bundled
  ultrasound images carry their own overlays): unlabelled, and left out of the scoring.

The names, numbers and dates are made up (seeded RNG). Nothing but counts is printed.

    python bench/pixel_set.py [--out bench/out/pixels] [--seed 7]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    MRImageStorage,
    NuclearMedicineImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "pixels"
SIZE = 512
CLIP_FRAMES = 30
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation2"))
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationMono-Regular.ttf", "LiberationSerif-Regular.ttf",
)
TEST_FILES = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"

# Made-up identities: none of these combinations is meant to be a real person.
FIRST = ("Margaret", "Tobias", "Ingrid", "Rafael", "Amara", "Declan", "Yuki", "Beatrice", "Omar", "Helena", "Casimir", "Priya",
         "Lucian", "Odette", "Soren", "Imogen")
LAST = ("Harlow", "Mendez", "Okafor", "Lindqvist", "Brennan", "Castellano", "Nakamura", "Whitfield", "Adeyemi", "Kowalski",
        "Ferreira", "Thornton", "Vasquez-Reyes", "O'Donnell", "Pemberton", "Szabo")
PLACES = ("Northgate Regional Medical Ctr", "St. Aldric General Hospital", "Lakeview Imaging Center", "Mercy Vale Clinic",
          "Riverbend University Hospital", "Eastmoor Radiology Associates")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
NON_PHI = {
    "US": ("5.0 MHz", "3.5MHz", "10 cm", "Depth 16 cm", "HR 72 bpm", "Gain 50%", "FR 30Hz", "THI", "2D", "MI 0.9", "TIS 0.4"),
    "CT": ("W:400 L:40", "120 kV", "5.0 mm", "SE 3", "IM 12", "AP", "PA", "LAT"),
    "MR": ("TR 500", "TE 15", "SE 2", "IM 7", "3.0 mm", "AP", "LAT", "Zoom 1.2"),
    "OT": ("AP", "PA", "LAT", "10 cm", "Zoom 1.5", "IM 3"),
}


@dataclass
class Spec:
    """One file of the set: where its image comes from and how it is stored."""

    name: str
    source: str
    kind: str  # "gray", "rgb", "ybr", "palette"
    syntax: UID
    modality: str
    sop_class: UID
    frames: int = 1
    invert: bool = False  # draw dark-on-light more often (a bright image)


SPECS = (
    Spec("ct16_explicit", "CT_small.dcm", "gray", ExplicitVRLittleEndian, "CT", CTImageStorage),
    Spec("ct16_rle", "CT_small.dcm", "gray", RLELossless, "CT", CTImageStorage),
    Spec("ct16_j2k", "CT_small.dcm", "gray", JPEG2000Lossless, "CT", CTImageStorage),
    Spec("ct16_jls", "CT_small.dcm", "gray", JPEGLSLossless, "CT", CTImageStorage),
    Spec("ct512_j2k", "693_J2KI.dcm", "gray", JPEG2000Lossless, "CT", CTImageStorage),
    Spec("mr16_explicit", "MR_small.dcm", "gray", ExplicitVRLittleEndian, "MR", MRImageStorage),
    Spec("mr16_implicit", "MR_small.dcm", "gray", ImplicitVRLittleEndian, "MR", MRImageStorage),
    Spec("mr16_rle", "MR_small.dcm", "gray", RLELossless, "MR", MRImageStorage),
    Spec("mr16_j2k", "MR_small.dcm", "gray", JPEG2000Lossless, "MR", MRImageStorage),
    Spec("mr16_jls", "MR_small.dcm", "gray", JPEGLSLossless, "MR", MRImageStorage),
    Spec("mr12_explicit", "examples_overlay.dcm", "gray", ExplicitVRLittleEndian, "MR", MRImageStorage),
    Spec("nm16_j2k", "JPEG2000.dcm", "gray", JPEG2000Lossless, "NM", NuclearMedicineImageStorage),
    Spec("ot8_explicit", "image_dfl.dcm", "gray", ExplicitVRLittleEndian, "OT", SecondaryCaptureImageStorage, invert=True),
    Spec("ot8_jpeg", "image_dfl.dcm", "gray", JPEGBaseline8Bit, "OT", SecondaryCaptureImageStorage),
    Spec("sc_rgb_explicit", "SC_rgb_jpeg_dcmd.dcm", "rgb", ExplicitVRLittleEndian, "OT", SecondaryCaptureImageStorage),
    Spec("sc_rgb_rle", "SC_rgb_jpeg_dcmd.dcm", "rgb", RLELossless, "OT", SecondaryCaptureImageStorage, invert=True),
    Spec("us_rgb_explicit", "examples_rgb_color.dcm", "rgb", ExplicitVRLittleEndian, "US", UltrasoundImageStorage),
    Spec("us_rgb_jpeg", "examples_rgb_color.dcm", "rgb", JPEGBaseline8Bit, "US", UltrasoundImageStorage),
    Spec("us_rgb_jls", "examples_rgb_color.dcm", "rgb", JPEGLSLossless, "US", UltrasoundImageStorage),
    Spec("us_rgb_j2k", "examples_rgb_color.dcm", "rgb", JPEG2000Lossless, "US", UltrasoundImageStorage),
    Spec("us_ybr_jpeg", "examples_ybr_color.dcm", "rgb", JPEGBaseline8Bit, "US", UltrasoundImageStorage),
    Spec("us_ybr_full_explicit", "examples_ybr_color.dcm", "ybr", ExplicitVRLittleEndian, "US", UltrasoundImageStorage),
    Spec("us_palette_explicit", "examples_palette.dcm", "palette", ExplicitVRLittleEndian, "US", UltrasoundImageStorage),
    Spec("us_palette_rle", "examples_palette.dcm", "palette", RLELossless, "US", UltrasoundImageStorage),
    Spec("us_cine30_jpeg", "examples_ybr_color.dcm", "rgb", JPEGBaseline8Bit, "US", UltrasoundMultiFrameImageStorage,
         frames=CLIP_FRAMES),
)

LUMA = np.array([0.299, 0.587, 0.114])
# Text that the bundled ultrasound images already carry (their own overlays), in 512x512
# coordinates. It is not labelled: new text is kept away from it, and the benchmark leaves
# these areas out of the "non-text pixels" it counts.
PREEXISTING_TEXT = {
    "examples_rgb_color.dcm": ([8, 22, 145, 110], [200, 12, 295, 62], [390, 22, 504, 110], [2, 138, 42, 252],
                               [468, 138, 510, 252], [192, 380, 294, 404], [312, 480, 502, 504]),
    "examples_palette.dcm": ([0, 0, 512, 84], [0, 90, 70, 382], [74, 124, 198, 154], [194, 90, 218, 118]),
    "examples_ybr_color.dcm": ([0, 2, 72, 66], [468, 26, 512, 212], [468, 248, 512, 302], [446, 416, 482, 444],
                               [0, 476, 512, 512]),
}
PALETTE_KEYWORDS = (
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor", "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
)


@dataclass
class Field:
    """One burned string: its segments share a line; each segment is labelled on its own."""

    text: str
    kind: str  # "phi", "non-phi", "label"
    what: str
    tag: str = ""
    frames: tuple[int, int] = (0, 1)
    box: list[int] = field(default_factory=list)
    chars: list[list[int]] = field(default_factory=list)
    font: str = ""
    size: int = 0
    contrast: str = ""
    anchor: str = ""

    def label(self) -> dict[str, Any]:
        return {
            "text": self.text, "kind": self.kind, "what": self.what, "tag": self.tag, "frames": list(self.frames),
            "box": self.box, "chars": self.chars, "font": self.font, "size": self.size, "contrast": self.contrast,
            "anchor": self.anchor,
        }


@dataclass
class Line:
    segments: list[Field]
    anchor: str
    contrast: str
    size: int
    font: str


@dataclass
class Identity:
    last: str
    first: str
    mrn: str
    dob: tuple[int, int, int]
    study: tuple[int, int, int]
    time: tuple[int, int, int]
    accession: str
    institution: str
    physician: tuple[str, str]

    def header(self) -> dict[str, str]:
        y, m, d = self.dob
        sy, sm, sd = self.study
        hh, mm, ss = self.time
        return {
            "PatientName": f"{self.last.upper()}^{self.first.upper()}",
            "PatientID": self.mrn,
            "PatientBirthDate": f"{y:04d}{m:02d}{d:02d}",
            "StudyDate": f"{sy:04d}{sm:02d}{sd:02d}",
            "SeriesDate": f"{sy:04d}{sm:02d}{sd:02d}",
            "ContentDate": f"{sy:04d}{sm:02d}{sd:02d}",
            "StudyTime": f"{hh:02d}{mm:02d}{ss:02d}",
            "SeriesTime": f"{hh:02d}{mm:02d}{ss:02d}",
            "ContentTime": f"{hh:02d}{mm:02d}{ss:02d}",
            "AccessionNumber": self.accession,
            "InstitutionName": self.institution,
            "ReferringPhysicianName": f"{self.physician[0]}^{self.physician[1]}",
        }


def _identity(rng: random.Random) -> Identity:
    return Identity(
        last=rng.choice(LAST),
        first=rng.choice(FIRST),
        mrn=str(rng.randint(10_000_000, 99_999_999)),
        dob=(rng.randint(1931, 2015), rng.randint(1, 12), rng.randint(1, 28)),
        study=(rng.randint(2016, 2025), rng.randint(1, 12), rng.randint(1, 28)),
        time=(rng.randint(7, 19), rng.randint(0, 59), rng.randint(0, 59)),
        accession=rng.choice(("A", "ACC", "")) + str(rng.randint(1_000_000, 99_999_999)),
        institution=rng.choice(PLACES),
        physician=(rng.choice(LAST), rng.choice(FIRST)),
    )


def _date_text(rng: random.Random, ymd: tuple[int, int, int]) -> str:
    y, m, d = ymd
    forms = (
        f"{y:04d}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y:04d}", f"{d:02d}.{m:02d}.{y:04d}", f"{d} {MONTHS[m - 1]} {y}",
        f"{y:04d}{m:02d}{d:02d}", f"{MONTHS[m - 1]} {d}, {y}", f"{d:02d}-{MONTHS[m - 1].upper()}-{y:04d}", f"{y:04d}/{m:02d}/{d:02d}",
    )
    return rng.choice(forms)


def _name_text(rng: random.Random, last: str, first: str) -> str:
    forms = (f"{last.upper()}^{first.upper()}", f"{last}, {first}", f"{first.upper()} {last.upper()}", f"{last.upper()}, {first}",
             f"{first} {last}")
    return rng.choice(forms)


def _phi_lines(rng: random.Random, who: Identity) -> list[list[Field]]:
    """Each entry is one line: an optional caption ("label") then the PHI value."""

    def line(caption: str | None, value: str, what: str, tag: str) -> list[Field]:
        segs = [Field(caption, "label", "caption")] if caption else []
        return segs + [Field(value, "phi", what, tag)]

    hh, mm, ss = who.time
    time_forms = (f"{hh:02d}:{mm:02d}:{ss:02d}", f"{hh:02d}:{mm:02d}", f"{(hh - 1) % 12 + 1}:{mm:02d} {'PM' if hh >= 12 else 'AM'}")
    lines = [
        line(rng.choice((None, "Name:", None)), _name_text(rng, who.last, who.first), "patient_name", "PatientName"),
        line(rng.choice(("MRN:", "ID:", None, "ID")), who.mrn, "patient_id", "PatientID"),
        line(rng.choice(("DOB:", None, "Born")), _date_text(rng, who.dob), "birth_date", "PatientBirthDate"),
        line(rng.choice((None, "Study:", None)), _date_text(rng, who.study), "study_date", "StudyDate"),
        line(None, rng.choice(time_forms), "study_time", "StudyTime"),
        line(rng.choice(("Acc:", "ACC#", None)), who.accession, "accession", "AccessionNumber"),
        line(None, who.institution, "institution", "InstitutionName"),
    ]
    if rng.random() < 0.5:
        lines.append(line("Ref:", f"Dr. {who.physician[1][0]}. {who.physician[0]}", "physician", "ReferringPhysicianName"))
    return lines


# ---------------------------------------------------------------- base images


@dataclass
class Base:
    """Pixels before text, in the stored domain: (frames, rows, cols[, 3])."""

    pixels: np.ndarray
    bits_stored: int
    signed: bool
    lo: float  # display range used to choose text values (stored units)
    hi: float
    extra: dict[str, Any] = field(default_factory=dict)  # header elements to keep (rescale, LUTs)
    palette: np.ndarray | None = None  # RGB of each stored index, for palette colour


def _resize(img: np.ndarray, nearest: bool = False) -> np.ndarray:
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_CUBIC
    if img.dtype in (np.int16, np.uint16, np.int32, np.uint32):
        out = cv2.resize(img.astype(np.float32), (SIZE, SIZE), interpolation=interp)
        return np.rint(out).astype(np.float64)
    return cv2.resize(img, (SIZE, SIZE), interpolation=interp)


def _load_base(spec: Spec) -> Base:
    ds = pydicom.dcmread(TEST_FILES / spec.source)
    arr = ds.pixel_array
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if nframes == 1:
        arr = arr[None]
    arr = arr[: spec.frames]
    if spec.kind == "palette":
        frames = np.stack([_resize(f, nearest=True) for f in arr]).astype(np.uint8)
        from pydicom.pixels import apply_color_lut

        extra = {k: ds[k].value for k in PALETTE_KEYWORDS}
        lut = apply_color_lut(np.arange(256, dtype=np.uint8), ds).astype(np.float64)
        palette = lut / 257.0 if lut.max() > 255 else lut  # (256, 3) in 0..255, by stored index
        return Base(frames, 8, False, 0, 255, extra, palette)
    if spec.kind in ("rgb", "ybr"):
        frames = np.stack([_resize(f) for f in arr]).astype(np.uint8)
        return Base(frames, 8, False, 0, 255)
    bits = int(ds.BitsStored)
    signed = bool(ds.PixelRepresentation)
    if spec.syntax == JPEGBaseline8Bit:
        bits, signed = 8, False
    vmin, vmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    frames = np.stack([_resize(f) for f in arr])
    if bits == 8 and ds.BitsStored != 8:
        frames = (frames - frames.min()) * 255.0 / max(1.0, float(frames.max() - frames.min()))
    frames = np.clip(np.rint(frames), vmin, vmax)
    lo, hi = np.percentile(frames, (1, 99.5))
    if hi - lo < 16:
        lo, hi = float(frames.min()), float(frames.max())
    dtype = np.uint8 if bits <= 8 else (np.int16 if signed else np.uint16)
    extra: dict[str, Any] = {}
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if spec.modality == "CT":
        extra.update(RescaleSlope=f"{slope:g}", RescaleIntercept=f"{intercept:g}", RescaleType="HU")
    else:
        slope, intercept = 1.0, 0.0
    extra["WindowCenter"] = f"{intercept + slope * (lo + hi) / 2:.1f}"
    extra["WindowWidth"] = f"{max(1.0, slope * (hi - lo)):.1f}"
    return Base(frames.astype(dtype), bits, signed, float(lo), float(hi), extra)


# ---------------------------------------------------------------- text


def _fonts() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in FONTS:
        for d in FONT_DIRS:
            if (d / name).is_file():
                found[name] = d / name
    missing = [f for f in FONTS if f not in found]
    if missing:
        sys.exit(f"pixel_set: fonts missing ({', '.join(missing)}); run: apt-get install -y fonts-dejavu fonts-liberation2")
    return found


def _char_masks(text: str, font: ImageFont.FreeTypeFont, x: int, y: int) -> list[tuple[int, int, np.ndarray]]:
    """(x, y, alpha) for each visible character, at the positions the whole string would use."""
    out = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        cx = x + round(font.getlength(text[:i]))
        left, top, right, bottom = font.getbbox(ch)
        w, h = max(1, right - left), max(1, bottom - top)
        img = Image.new("L", (w, h), 0)
        ImageDraw.Draw(img).text((-left, -top), ch, font=font, fill=255)
        alpha = np.asarray(img)
        ys, xs = np.nonzero(alpha)
        if len(xs) == 0:
            continue
        alpha = alpha[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1]
        out.append((cx + left + int(xs.min()), y + top + int(ys.min()), alpha))
    return out


def _segments_layout(line: Line, font: ImageFont.FreeTypeFont, x: int, y: int) -> list[tuple[Field, int]]:
    """x of each segment: segments are separated by one space."""
    out, cx = [], x
    space = round(font.getlength(" "))
    for seg in line.segments:
        out.append((seg, cx))
        cx += round(font.getlength(seg.text)) + space
    return out


def _line_extent(line: Line, font: ImageFont.FreeTypeFont) -> tuple[int, int, int]:
    """(width, top offset, bottom offset) of the line's ink relative to its origin."""
    text = " ".join(s.text for s in line.segments)
    left, top, right, bottom = font.getbbox(text)
    return right, top, bottom


INK = 64  # alpha (of 255) from which an anti-aliased pixel counts as ink for the label boxes
PLATE = (5, 4)  # how far a dark-on-light plate reaches beyond the ink (x, y)


LINE_GAP = 2 * PLATE[1] + 3  # lines never share pixels, plates included


def _overlaps(a: list[int], b: list[int], pad_x: int = 2 * PLATE[0] + 2, pad_y: int = 2 * PLATE[1] + 2) -> bool:
    return not (a[2] + pad_x <= b[0] or b[2] + pad_x <= a[0] or a[3] + pad_y <= b[1] or b[3] + pad_y <= a[1])


class Layout:
    """Places lines at anchors without overlap, shrinking a line that does not fit."""

    ANCHORS = ("tl", "tr", "bl", "br", "tc", "bc", "ml", "mr", "mid")

    def __init__(self, rows: int, cols: int, margin: int, keep_out: tuple[list[int], ...] = ()) -> None:
        self.rows, self.cols, self.margin = rows, cols, margin
        self.cursor = {a: 0 for a in self.ANCHORS}  # distance stacked from the anchor edge
        self.placed: list[list[int]] = [list(b) for b in keep_out]

    def place(self, line: Line, fonts: dict[str, Path]) -> tuple[int, int, ImageFont.FreeTypeFont] | None:
        """Tries the line's anchor, moving away from the edge past what is in the way, then
        smaller sizes, then the other corners and edges."""
        wanted = line.size
        alternates = [a for a in ("tl", "tr", "bl", "br", "tc", "bc") if a != line.anchor]
        for anchor in [line.anchor, *alternates]:
            for size in sorted({wanted, max(12, wanted - 6), 12}, reverse=True):
                font = ImageFont.truetype(str(fonts[line.font]), size)
                width, top, bottom = _line_extent(line, font)
                for extra in range(0, self.rows // 3, 6):
                    x, y = self._origin(anchor, width, top, bottom, extra)
                    box = [x, y + top, x + width, y + bottom]
                    inside = box[0] >= 1 and box[1] >= 1 and box[2] <= self.cols - 1 and box[3] <= self.rows - 1
                    if inside and not any(_overlaps(box, p) for p in self.placed):
                        self.placed.append(box)
                        self.cursor[anchor] += extra + (bottom - top) + max(LINE_GAP, size // 3)
                        line.size, line.anchor = size, anchor
                        return x, y, font
        return None

    def _origin(self, anchor: str, width: int, top: int, bottom: int, extra: int = 0) -> tuple[int, int]:
        m, c = self.margin, self.cursor[anchor] + extra
        height = bottom - top
        if anchor[0] == "t":
            y = m + c - top
        elif anchor[0] == "b":
            y = self.rows - m - c - bottom
        else:  # middle band: stack downward from the centre
            y = self.rows // 2 - height // 2 + c - top
        if anchor.endswith("l"):
            x = m
        elif anchor.endswith("r"):
            x = self.cols - m - width
        else:
            x = (self.cols - width) // 2
        return x, y


def _lines_for(spec: Spec, rng: random.Random, who: Identity, fonts: dict[str, Path]) -> list[Line]:
    font_pair = rng.sample(list(fonts), 2)
    contrasts = ["bright", "bright", "low", "dark_on_light"] if spec.invert else ["bright", "bright", "bright", "low", "dark_on_light"]
    lines: list[Line] = []
    phi = _phi_lines(rng, who)
    corner_anchors = ["tl", "tr", "tl", "tr", "bl", "br", "bl", "br"]
    rng.shuffle(corner_anchors)
    for i, segs in enumerate(phi):
        anchor = corner_anchors[i % len(corner_anchors)]
        if segs[-1].what == "institution":
            anchor = rng.choice(("tc", "bc"))
        lines.append(Line(segs, anchor, rng.choice(contrasts), rng.randint(12, 28), rng.choice(font_pair)))
    if rng.random() < 0.6:  # a PHI value in the middle of the image
        mid = rng.choice(phi[:3])
        value = mid[-1]
        lines.append(Line([Field(value.text, "phi", value.what, value.tag)], "mid", rng.choice(contrasts),
                          rng.randint(12, 28), rng.choice(font_pair)))
    pool = list(NON_PHI.get(spec.modality, NON_PHI["OT"]))
    rng.shuffle(pool)
    for text in pool[: rng.randint(3, 5)]:
        lines.append(Line([Field(text, "non-phi", "annotation")], rng.choice(("tl", "tr", "bl", "br", "bc", "tc")),
                          rng.choice(contrasts), rng.randint(12, 28), rng.choice(font_pair)))
    for text, anchor in (("L", "ml"), ("R", "mr")):  # orientation markers at the edges
        if rng.random() < 0.7:
            lines.append(Line([Field(text, "non-phi", "marker")], anchor, rng.choice(contrasts), rng.randint(14, 28),
                              rng.choice(font_pair)))
    return lines


PER_FRAME = ("elapsed", "frame_number", "acquisition_time")


def _check_no_overlap(name: str, fields: list[Field]) -> None:
    """Labels are only exact if no two fields on a common frame share pixels."""
    for i, a in enumerate(fields):
        for b in fields[i + 1:]:
            shared = a.frames[0] < b.frames[1] and b.frames[0] < a.frames[1]
            if shared and _overlaps(a.box, b.box, 0, 0):
                raise RuntimeError(f"{name}: two labelled fields overlap; change the seed or the layout")


def _clip_lines(rng: random.Random, who: Identity, fonts: dict[str, Path], frames: int) -> list[Line]:
    """Per-frame text of a cine clip: an elapsed-time counter and a frame number (non-PHI),
    and a wall clock (PHI) that ticks every 10 frames."""
    font = rng.choice(list(fonts))
    hh, mm, ss = who.time
    out = []
    for f in range(frames):
        out.append(Line([Field(f"t {f / 30:0.3f} s", "non-phi", "elapsed", frames=(f, f + 1))], "br", "bright", 16, font))
        out.append(Line([Field(f"{f + 1:02d}/{frames}", "non-phi", "frame_number", frames=(f, f + 1))], "br", "bright", 14, font))
    for start in range(0, frames, 10):
        sec = ss + start // 10
        clock = f"{hh:02d}:{mm + sec // 60:02d}:{sec % 60:02d}"
        out.append(Line([Field(clock, "phi", "acquisition_time", "StudyTime", frames=(start, min(frames, start + 10)))], "tc",
                        "bright", 18, font))
    return out


class Burner:
    """Draws text into the stored pixels with alpha blending (nearest palette index for palette images)."""

    def __init__(self, spec: Spec, base: Base) -> None:
        self.spec, self.base = spec, base
        self.pix = base.pixels.astype(np.float64)

    def _lum(self, values: np.ndarray) -> np.ndarray:
        """Display brightness 0..1 of stored values (the window for grey, luma for colour)."""
        b = self.base
        if self.spec.kind == "gray":
            return np.clip((values - b.lo) / max(1e-9, b.hi - b.lo), 0, 1)
        if self.spec.kind == "palette":
            assert b.palette is not None
            return (b.palette @ LUMA)[values.astype(int)] / 255.0
        return (values.reshape(-1, 3) @ LUMA) / 255.0

    def _value(self, lum: float, tint: np.ndarray | None = None) -> Any:
        """The stored value showing brightness lum (a palette index for palette colour)."""
        b = self.base
        if self.spec.kind == "gray":
            return b.lo + lum * (b.hi - b.lo)
        if self.spec.kind == "palette":
            assert b.palette is not None
            return int(np.argmin(np.abs(b.palette @ LUMA - 255.0 * lum)))
        return np.array([255.0 * lum] * 3) if tint is None else tint

    def _colour(self, contrast: str, region: np.ndarray, text: str) -> tuple[Any, Any, str]:
        """(text value, plate value or None, style used) over this background region. Text stays
        legible: bright text turns dark over a bright background, and a background that is half
        bright, half dark gets a plate."""
        p10, p50, p90 = np.percentile(self._lum(region), (10, 50, 90))
        if contrast != "dark_on_light" and p90 - p10 > 0.45:
            contrast = "dark_on_light"
        if contrast == "dark_on_light":
            return self._value(0.05, np.array([15.0, 15.0, 15.0])), self._value(0.88, np.array([228.0, 228.0, 228.0])), contrast
        if contrast == "low":
            lum = p50 + 0.3 if p50 < 0.6 else p50 - 0.3
            tint = None
            if self.spec.kind in ("rgb", "ybr"):
                med = np.median(region.reshape(-1, 3), axis=0)
                tint = np.clip(med + (76.0 if p50 < 0.6 else -76.0), 0, 255)
            return self._value(float(lum), tint), None, contrast
        if p50 >= 0.5:
            return self._value(0.0, np.array([10.0, 10.0, 10.0])), None, "dark"
        yellow = sum(map(ord, text)) % 3 == 0  # some ultrasound overlays are yellow
        return self._value(1.0, np.array([255.0, 230.0, 40.0]) if yellow else np.array([255.0, 255.0, 255.0])), None, "bright"

    def burn_line(self, line: Line, x: int, y: int, font: ImageFont.FreeTypeFont) -> None:
        """Burns every segment of a line in one colour, over one plate for dark-on-light text."""
        laid = [(seg, _char_masks(seg.text, font, sx, y)) for seg, sx in _segments_layout(line, font, x, y)]
        every = [c for _, chars in laid for c in chars]
        f0, f1 = line.segments[0].frames
        x0 = min(cx for cx, _, _ in every)
        y0 = min(cy for _, cy, _ in every)
        x1 = max(cx + a.shape[1] for cx, _, a in every)
        y1 = max(cy + a.shape[0] for _, cy, a in every)
        value, plate, style = self._colour(line.contrast, self.pix[f0, y0:y1, x0:x1], line.segments[-1].text)
        if plate is not None:
            py0, py1, px0, px1 = max(0, y0 - PLATE[1]), min(SIZE, y1 + PLATE[1]), max(0, x0 - PLATE[0]), min(SIZE, x1 + PLATE[0])
            self.pix[f0:f1, py0:py1, px0:px1] = plate
        for seg, chars in laid:
            boxes = [b for b in (self._burn_char(cx, cy, alpha, f0, f1, value) for cx, cy, alpha in chars) if b]
            seg.chars = boxes
            seg.box = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            seg.contrast = style

    def _burn_char(self, cx: int, cy: int, alpha: np.ndarray, f0: int, f1: int, value: Any) -> list[int] | None:
        h, w = alpha.shape
        sl = (slice(f0, f1), slice(cy, cy + h), slice(cx, cx + w))
        if self.spec.kind == "palette":  # indices cannot blend: a pixel is ink or not
            on = alpha > 127
            if not on.any():
                return None
            self.pix[sl][:, on] = value
            ys, xs = np.nonzero(on)
            return [cx + int(xs.min()), cy + int(ys.min()), cx + int(xs.max()) + 1, cy + int(ys.max()) + 1]
        a = alpha.astype(np.float64) / 255.0
        if self.pix.ndim == 4:
            a = a[..., None]
        self.pix[sl] = self.pix[sl] * (1 - a) + np.asarray(value) * a
        ink = alpha >= INK if (alpha >= INK).any() else alpha > 0
        ys, xs = np.nonzero(ink)
        return [cx + int(xs.min()), cy + int(ys.min()), cx + int(xs.max()) + 1, cy + int(ys.max()) + 1]

    def result(self) -> np.ndarray:
        b = self.base
        if self.spec.kind in ("rgb", "ybr", "palette"):
            return np.clip(np.rint(self.pix), 0, 255).astype(np.uint8)
        vmin, vmax = (-(1 << (b.bits_stored - 1)), (1 << (b.bits_stored - 1)) - 1) if b.signed else (0, (1 << b.bits_stored) - 1)
        return np.clip(np.rint(self.pix), vmin, vmax).astype(b.pixels.dtype)


# ---------------------------------------------------------------- DICOM


def _dataset(spec: Spec, who: Identity, base: Base, pixels: np.ndarray, index: int) -> Dataset:
    frames = pixels.shape[0]
    ds = Dataset()
    meta = FileMetaDataset()
    sop_uid = generate_uid(entropy_srcs=["phiscrub-bench-pixels", spec.name, "sop"])
    meta.MediaStorageSOPClassUID = spec.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["phiscrub-bench-pixels", spec.name, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["phiscrub-bench-pixels", spec.name, "series"])
    for keyword, value in who.header().items():
        setattr(ds, keyword, value)
    ds.PatientSex = "O"
    ds.Modality = spec.modality
    ds.StudyDescription = "BENCH PIXELS"
    ds.SeriesNumber = 1
    ds.InstanceNumber = index + 1
    ds.BurnedInAnnotation = "YES"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = SIZE, SIZE
    color = spec.kind in ("rgb", "ybr")
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = {"rgb": "RGB", "ybr": "YBR_FULL", "palette": "PALETTE COLOR"}.get(spec.kind, "MONOCHROME2")
    if color:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 if base.bits_stored <= 8 else 16
    ds.BitsStored = base.bits_stored
    ds.HighBit = base.bits_stored - 1
    ds.PixelRepresentation = int(base.signed)
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.FrameTime = "33.3"
        ds.FrameIncrementPointer = 0x00181063
    for keyword, value in base.extra.items():
        setattr(ds, keyword, value)
    return ds


def _encode(ds: Dataset, spec: Spec, pixels: np.ndarray) -> None:
    single = pixels[0] if pixels.shape[0] == 1 else pixels
    if spec.kind == "ybr":
        from pydicom.pixels import convert_color_space

        single = convert_color_space(single, "RGB", "YBR_FULL")
    if spec.syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        ds.PixelData = single.tobytes()
        ds.file_meta.TransferSyntaxUID = spec.syntax
        return
    if spec.syntax == JPEGBaseline8Bit:
        frames = []
        for frame in pixels:
            buf = io.BytesIO()
            # 4:2:2 chroma subsampling for colour (YBR_FULL_422), as ultrasound machines write it
            Image.fromarray(frame).save(buf, "JPEG", quality=92, subsampling=1)
            frames.append(buf.getvalue())
        ds.PixelData = encapsulate(frames)
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        if spec.kind in ("rgb", "ybr"):
            ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
        return
    ds.PixelData = single.tobytes()
    ds.compress(spec.syntax, single)


def build(out: Path = DEFAULT_OUT, seed: int = 7) -> dict[str, Any]:
    """Writes the set and labels.json into out; returns the labels document."""
    fonts = _fonts()
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    labels: dict[str, Any] = {
        "version": 1,
        "seed": seed,
        "box_convention": "[x0, y0, x1, y1] half-open; x is the column; frames [first, stop)",
        "files": {},
    }
    for index, spec in enumerate(SPECS):
        who = _identity(rng)
        base = _load_base(spec)
        burner = Burner(spec, base)
        keep_out = PREEXISTING_TEXT.get(spec.source, ())
        layout = Layout(SIZE, SIZE, rng.randint(4, 14), keep_out)
        fields: list[Field] = []
        lines = _lines_for(spec, rng, who, fonts)
        if spec.frames > 1:
            lines = _clip_lines(rng, who, fonts, spec.frames) + lines
        groups: dict[str, tuple[int, int, ImageFont.FreeTypeFont]] = {}
        for line in lines:
            seg0 = line.segments[0]
            per_frame = seg0.what in PER_FRAME
            if per_frame and seg0.what in groups:  # text that changes per frame stays in one place
                placed: tuple[int, int, ImageFont.FreeTypeFont] | None = groups[seg0.what]
            else:
                placed = layout.place(line, fonts)
                if per_frame and placed is not None:
                    groups[seg0.what] = placed
            if placed is None:
                continue
            x, y, font = placed
            for seg in line.segments:
                if not per_frame:
                    seg.frames = (0, spec.frames)
                seg.font, seg.size, seg.anchor = line.font, line.size, line.anchor
                fields.append(seg)
            burner.burn_line(line, x, y, font)
        _check_no_overlap(spec.name, fields)
        pixels = burner.result()
        ds = _dataset(spec, who, base, pixels, index)
        _encode(ds, spec, pixels)
        name = f"{index:02d}_{spec.name}.dcm"
        ds.save_as(out / name, enforce_file_format=True)
        check = pydicom.dcmread(out / name)
        decoded = check.pixel_array
        expect = (spec.frames, SIZE, SIZE) if spec.frames > 1 else (SIZE, SIZE)
        if decoded.shape[: len(expect)] != expect:
            raise RuntimeError(f"{name}: decoded shape {decoded.shape}, expected {expect}")
        labels["files"][name] = {
            "source": spec.source,
            "modality": spec.modality,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
            "syntax_name": ds.file_meta.TransferSyntaxUID.name,
            "lossy": spec.syntax == JPEGBaseline8Bit,
            "photometric": str(ds.PhotometricInterpretation),
            "bits_stored": base.bits_stored,
            "signed": base.signed,
            "rows": SIZE,
            "cols": SIZE,
            "frames": spec.frames,
            "fields": [f.label() for f in fields],
            "preexisting_text": [list(b) for b in keep_out],
        }
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def summary(labels: dict[str, Any]) -> str:
    files = labels["files"]
    fields = [f for e in files.values() for f in e["fields"]]
    clips = sum(1 for e in files.values() if e["frames"] > 1)
    kinds = {k: sum(1 for f in fields if f["kind"] == k) for k in ("phi", "non-phi", "label")}
    syntaxes = sorted({e["syntax_name"] for e in files.values()})
    return (
        f"{len(files)} files ({len(files) - clips} single-frame, {clips} clip(s) of {CLIP_FRAMES} frames), "
        f"{kinds['phi']} PHI fields, {kinds['non-phi']} non-PHI fields, {kinds['label']} captions; "
        f"{len(syntaxes)} transfer syntaxes"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    labels = build(args.out, args.seed)
    print(f"pixel_set: wrote {summary(labels)} to {args.out}")


if __name__ == "__main__":
    main()

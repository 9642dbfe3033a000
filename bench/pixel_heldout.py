"""Builds a held-out labelled set of DICOM files with burned-in text: text the pixel stage was never tuned on.

The pixel stage was tuned on bench/pixel_set.py's sets (seeds 7, 11, 13, 17, 19): its fonts, sizes,
placements (corners, edges, a line in the middle), its contrast styles and its made-up names. This
module writes a set in the same labels.json format (bench/bench_pixels.py scores it unchanged) whose
text differs from all of that:

- a patient block (caption + value: name, ID, date of birth, institution, study date) printed over
  anatomy: the middle of the body, bone (the brightest structure) or ultrasound speckle, in black,
  white or mid-grey on grey images and cyan, yellow, green, magenta or white on colour ones; a line
  whose colour would not be legible over what lies under it (under 60% of its background 0.2 of
  the display range away from the ink) takes the next colour of the file's palette instead;
- a bitmap scanner font in half the files: PIL's built-in bitmap font, or DejaVu Sans Mono Bold /
  Liberation Mono Bold rendered without anti-aliasing (FreeType mono mode), at 8-14 px; the other
  half use anti-aliased TrueType faces pixel_set.py does not use (obliques, italics, condensed and
  serif bolds) at 10-22 px;
- text touching the frame: in every file a line whose ink starts in column 0 or ends in the last
  column, and one whose ink starts in row 0 or ends in the last row (clipped at the frame, as a
  scanner's overlay is);
- bases pixel_set.py does not use (a CT head whose skull is the bone, a chest radiograph stored
  MONOCHROME1 and a CT localizer from TCIA's Pseudo-PHI-DICOM-Data via Presidio's tests with their
  own burned text cropped away, a PET/CT fusion RGB capture, a JPEG 2000 Doppler ultrasound with its
  overlays cropped away, in colour and in grey) next to pydicom's colour ultrasound and 12-bit MR;
  512x512 or non-square native sizes (480x640, 512x394); Explicit and Implicit VR, RLE and a few
  JPEG baseline files;
- fresh vocabularies: names, places, ID and accession formats pixel_set.py never draws.

Every burned PHI value is also in the header attribute its label names (PatientName, PatientID,
PatientBirthDate, InstitutionName, StudyDate, StudyTime, AccessionNumber, ReferringPhysicianName),
so a 'sensitive' redactor can match it. Labels carry, beside pixel_set.py's keys, "region"
(body, bone, speckle, edge, corner), "style" ("aa" or "bitmap"), "colour", "edge" (left, right,
top, bottom or "") and, for bitmap lines, "ink" (the stored value every ink pixel holds). Field
"contrast" is the colour name and "anchor" is "mid" for text over anatomy ("edge-left"... for
lines on the frame's edge, "tl"... in corners), so bench_pixels.py's breakdown groups them as it
does its own set.

Seeds >= 101 are the held-out seeds: they are never used for tuning, only for reporting.
Nothing but counts is printed.

    python bench/pixel_heldout.py [--out bench/out/pixels_heldout] [--seed 101] [--limit N]
    python bench/pixel_heldout.py --out DIR --report      # recall by region, colour, style, edge from DIR/results.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
ps = importlib.import_module("pixel_set")

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "pixels_heldout"
FIRST_HELDOUT_SEED = 101
ROOT = Path(__file__).resolve().parents[1]
REAL = {  # read-only real files (sources and licences: tests/data/real/SOURCES.md, ../shared/real-data/README.md)
    "presidio-2_ORIGINAL.dcm": ROOT / "tests" / "data" / "real" / "presidio-2_ORIGINAL.dcm",
    "presidio-0_ORIGINAL_compressed.dcm": ROOT.parent / "shared" / "real-data" / "presidio-0_ORIGINAL_compressed.dcm",
    "presidio-RGB_ORIGINAL.dcm": ROOT.parent / "shared" / "real-data" / "presidio-RGB_ORIGINAL.dcm",
}

# Faces pixel_set.py's FONTS does not hold (it has DejaVuSansMono.ttf and LiberationMono-Regular.ttf,
# anti-aliased: the bitmap style renders other monospace faces, without anti-aliasing).
AA_FONTS = ("DejaVuSans-Oblique.ttf", "DejaVuSansCondensed-Bold.ttf", "DejaVuSerifCondensed.ttf", "DejaVuSerif-Bold.ttf",
            "LiberationSans-Italic.ttf", "LiberationSerif-Bold.ttf", "LiberationSans-BoldItalic.ttf")
MONO_FONTS = ("DejaVuSansMono-Bold.ttf", "LiberationMono-Bold.ttf")
PIL_BITMAP = "PIL bitmap"

# Made-up identities, none in pixel_set.py's lists: no combination is meant to be a real person or place.
FIRST = ("Anselm", "Brigida", "Cormac", "Delphine", "Eero", "Fenella", "Gideon", "Hanne", "Ignatius", "Jolanta", "Kwabena",
         "Liesel", "Matthias", "Noor", "Oriel", "Philippa", "Quentin", "Rosalind", "Tamsin", "Ulrich", "Wilhelmina", "Zofia")
LAST = ("Abernathy", "Bjornsson", "Cavendish", "Dimitriou", "Eberhardt", "Fairweather", "Gallagher", "Holmqvist", "Iwasaki",
        "Jankowski", "Kensington", "Laurent", "Novak", "Okonkwo", "Pellegrini", "Quintero", "Rasmussen", "Sandoval",
        "Trevelyan", "Villeneuve", "Wojcik", "Yardley", "Zielinski", "MacAllister")
PLACES = ("Kestrel Bay Medical Center", "Ashcombe Community Hospital", "Pinecrest Valley Radiology", "St. Wendeline Infirmary",
          "Marlowe Heights Clinic", "Thornbury Imaging Partners", "Coldwater Springs Medical", "Elmstead Children's Hospital")

CAPTIONS = {
    "patient_name": ("Name:", "Patient:", "Pt:"),
    "patient_id": ("ID:", "MRN:", "Pat ID:"),
    "birth_date": ("DOB:", "Birth:", "D.O.B."),
    "institution": ("Inst:", "Hosp:", "Site:"),
    "study_date": ("Study:", "Exam:", "Date:"),
}
NON_PHI = {
    "CT": ("120 kV", "250 mAs", "W 80 L 40", "2.5 mm", "Tilt 0", "AP", "L", "R"),
    "CR": ("AP", "L", "110 kVp", "Upright", "1.8 mAs", "R"),
    "MR": ("TR 2400", "TE 90", "3.0 mm", "AP", "L", "R", "FOV 24"),
    "US": ("5.0 MHz", "7.5MHz", "D 4.0 cm", "G 62", "L", "AP", "PW", "MI 1.1"),
    "PT": ("SUV 0-6", "AP", "L", "R", "2 min/bed"),
}
EDGE_NON_PHI = ("SE 3 IM 41", "Page 1/1", "W 350 L 40", "Scale 1:1", "Ser 2 Img 7", "No. 12")

GREY_INK = {"black": 0.0, "white": 1.0, "grey": 0.5}  # display brightness
RGB_INK = {"cyan": (0, 255, 255), "yellow": (255, 255, 0), "green": (0, 255, 0), "magenta": (255, 0, 255),
           "white": (255, 255, 255), "black": (0, 0, 0)}
GREY_PALETTE = ("black", "white", "grey")
RGB_PALETTE = ("cyan", "yellow", "green", "magenta", "white")
LEGIBLE_STEP = 0.2  # a background pixel this far (display range 0..1) from the ink shows it
LEGIBLE_SHARE = 0.6  # ... and at least this share of each character's background must
LEGIBLE_FLOOR = 0.45  # a patient block over busy anatomy settles for this where no spot reaches LEGIBLE_SHARE
TRIES = 60  # spots tried for a line before giving up
PAD = (12, 10)  # space kept between lines of different groups (x, y), as pixel_set.py's plates
MARGIN = 3  # lines that do not touch the frame keep this far from it


@dataclass
class HSpec:
    """One file of the held-out set."""

    name: str
    base: str  # key of BASES
    region: str  # "body", "bone", "speckle": where the patient block goes
    colour: str  # the block's colour (the file's palette supplies the rest)
    style: str  # "aa" or "bitmap"
    syntax: UID


@dataclass
class BaseDef:
    source: str
    modality: str
    sop_class: UID
    kind: str  # "gray" or "rgb" (pixel_set.py's kinds)
    mono1: bool = False


BASES = {
    "ct_head": BaseDef("J2K_pixelrep_mismatch.dcm", "CT", CTImageStorage, "gray"),
    "cxr": BaseDef("presidio-0_ORIGINAL_compressed.dcm", "CR", SecondaryCaptureImageStorage, "gray", mono1=True),
    "localizer": BaseDef("presidio-2_ORIGINAL.dcm", "CT", CTImageStorage, "gray"),
    "us_doppler": BaseDef("examples_jpeg2k.dcm", "US", UltrasoundImageStorage, "rgb"),
    "us_doppler_grey": BaseDef("examples_jpeg2k.dcm", "US", UltrasoundImageStorage, "gray"),
    "us_rgb": BaseDef("examples_rgb_color.dcm", "US", UltrasoundImageStorage, "rgb"),
    "us_ybr": BaseDef("examples_ybr_color.dcm", "US", UltrasoundImageStorage, "rgb"),
    "petct": BaseDef("presidio-RGB_ORIGINAL.dcm", "PT", SecondaryCaptureImageStorage, "rgb"),
    "mr": BaseDef("examples_overlay.dcm", "MR", MRImageStorage, "gray"),
}

E, IMPL, RLE, JPG = ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, JPEGBaseline8Bit
# Ordered so that the first few files already hold every style, colour kind and edge (--limit).
SPECS = (
    HSpec("ct_head_body_white_aa", "ct_head", "body", "white", "aa", E),
    HSpec("us_doppler_speckle_cyan_bitmap", "us_doppler", "speckle", "cyan", "bitmap", RLE),
    HSpec("cxr_bone_black_bitmap", "cxr", "bone", "black", "bitmap", RLE),
    HSpec("petct_body_yellow_aa", "petct", "body", "yellow", "aa", E),
    HSpec("us_grey_speckle_white_bitmap", "us_doppler_grey", "speckle", "white", "bitmap", E),
    HSpec("localizer_body_black_aa", "localizer", "body", "black", "aa", E),
    HSpec("ct_head_bone_black_aa", "ct_head", "bone", "black", "aa", RLE),
    HSpec("ct_head_body_grey_bitmap", "ct_head", "body", "grey", "bitmap", IMPL),
    HSpec("ct_head_bone_grey_bitmap", "ct_head", "bone", "grey", "bitmap", RLE),
    HSpec("cxr_body_black_aa", "cxr", "body", "black", "aa", E),
    HSpec("cxr_bone_grey_aa", "cxr", "bone", "grey", "aa", E),
    HSpec("cxr_body_white_bitmap", "cxr", "body", "white", "bitmap", IMPL),
    HSpec("localizer_body_grey_bitmap", "localizer", "body", "grey", "bitmap", RLE),
    HSpec("localizer_body_white_aa", "localizer", "body", "white", "aa", RLE),
    HSpec("us_grey_speckle_black_aa", "us_doppler_grey", "speckle", "black", "aa", RLE),
    HSpec("us_grey_speckle_grey_aa", "us_doppler_grey", "speckle", "grey", "aa", JPG),
    HSpec("us_doppler_speckle_yellow_aa", "us_doppler", "speckle", "yellow", "aa", E),
    HSpec("us_doppler_speckle_green_aa", "us_doppler", "speckle", "green", "aa", JPG),
    HSpec("us_doppler_speckle_magenta_bitmap", "us_doppler", "speckle", "magenta", "bitmap", E),
    HSpec("us_rgb_speckle_yellow_aa", "us_rgb", "speckle", "yellow", "aa", E),
    HSpec("us_rgb_speckle_cyan_bitmap", "us_rgb", "speckle", "cyan", "bitmap", RLE),
    HSpec("us_ybr_speckle_green_bitmap", "us_ybr", "speckle", "green", "bitmap", RLE),
    HSpec("us_ybr_speckle_magenta_aa", "us_ybr", "speckle", "magenta", "aa", JPG),
    HSpec("petct_body_cyan_bitmap", "petct", "body", "cyan", "bitmap", RLE),
    HSpec("petct_body_white_aa", "petct", "body", "white", "aa", RLE),
    HSpec("mr_body_white_aa", "mr", "body", "white", "aa", E),
    HSpec("mr_body_black_bitmap", "mr", "body", "black", "bitmap", RLE),
    HSpec("mr_body_grey_aa", "mr", "body", "grey", "aa", IMPL),
)


# ---------------------------------------------------------------- identities


def _identity(rng: random.Random) -> Any:
    ids = (f"HX-{rng.randint(1_000_000, 9_999_999)}", f"K{rng.randint(10_000_000, 99_999_999)}",
           f"{rng.randint(100_000, 999_999)}-{rng.randint(10, 99)}", f"00{rng.randint(1_000_000, 9_999_999)}")
    accessions = (f"RA{rng.randint(1_000_000, 9_999_999)}", f"E{rng.randint(100_000, 999_999)}X",
                  f"{rng.randint(2016, 2025)}-{rng.randint(10_000, 99_999)}")
    return ps.Identity(
        last=rng.choice(LAST),
        first=rng.choice(FIRST),
        mrn=rng.choice(ids),
        dob=(rng.randint(1928, 2018), rng.randint(1, 12), rng.randint(1, 28)),
        study=(rng.randint(2017, 2026), rng.randint(1, 12), rng.randint(1, 28)),
        time=(rng.randint(6, 21), rng.randint(0, 59), rng.randint(0, 59)),
        accession=rng.choice(accessions),
        institution=rng.choice(PLACES),
        physician=(rng.choice(LAST), rng.choice(FIRST)),
    )


def _time_text(rng: random.Random, hms: tuple[int, int, int]) -> str:
    hh, mm, ss = hms
    return rng.choice((f"{hh:02d}:{mm:02d}:{ss:02d}", f"{hh:02d}:{mm:02d}", f"{(hh - 1) % 12 + 1}:{mm:02d} {'PM' if hh >= 12 else 'AM'}"))


class HField(ps.Field):
    """pixel_set.Field with the held-out set's categories."""

    def __init__(self, text: str, kind: str, what: str, tag: str = "") -> None:
        super().__init__(text, kind, what, tag)
        self.region, self.style, self.colour, self.edge = "", "", "", ""
        self.ink: list[int] | None = None  # bitmap lines: the stored value of every ink pixel
        self.legible = 0.0  # share of the least legible character's background that shows the ink

    def label(self) -> dict[str, Any]:
        out = super().label()
        out.update(region=self.region, style=self.style, colour=self.colour, edge=self.edge, legible=round(self.legible, 3))
        if self.ink is not None:
            out["ink"] = self.ink
        return out


def _segs(caption: str | None, value: str, what: str, tag: str) -> list[HField]:
    return ([HField(caption, "label", "caption")] if caption else []) + [HField(value, "phi", what, tag)]


def _block(rng: random.Random, who: Any) -> list[list[HField]]:
    """The patient block: five caption + value lines."""
    name = ps._name_text(rng, who.last, who.first)
    institution = who.institution.upper() if rng.random() < 0.4 else who.institution
    return [
        _segs(rng.choice(CAPTIONS["patient_name"]), name, "patient_name", "PatientName"),
        _segs(rng.choice(CAPTIONS["patient_id"]), who.mrn, "patient_id", "PatientID"),
        _segs(rng.choice(CAPTIONS["birth_date"]), ps._date_text(rng, who.dob), "birth_date", "PatientBirthDate"),
        _segs(rng.choice(CAPTIONS["institution"]), institution, "institution", "InstitutionName"),
        _segs(rng.choice(CAPTIONS["study_date"]), ps._date_text(rng, who.study), "study_date", "StudyDate"),
    ]


def _edge_text(rng: random.Random, who: Any) -> list[HField]:
    """A line for the frame's edge: PHI (accession, time, physician, name) or scanner text."""
    if rng.random() < 0.35:
        return [HField(rng.choice(EDGE_NON_PHI), "non-phi", "annotation")]
    choice = rng.randrange(4)
    if choice == 0:
        return _segs(rng.choice(("Acc:", "ACC#", None)), who.accession, "accession", "AccessionNumber")
    if choice == 1:
        return _segs(rng.choice(("Time:", None)), _time_text(rng, who.time), "study_time", "StudyTime")
    if choice == 2:
        last, first = who.physician
        return _segs("Ref:", rng.choice((f"{last}, {first}", f"Dr. {last}", f"{last.upper()}^{first.upper()}")), "physician",
                     "ReferringPhysicianName")
    return _segs(None, ps._name_text(rng, who.last, who.first), "patient_name", "PatientName")


# ---------------------------------------------------------------- bases


def _window(frame: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(frame, (1, 99.5))
    if hi - lo < 16:
        lo, hi = float(frame.min()), float(frame.max())
    return float(lo), float(hi)


def _grey_base(frame: np.ndarray, bits: int, signed: bool, modality: str) -> Any:
    vmin, vmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    frame = np.clip(np.rint(frame), vmin, vmax)
    lo, hi = _window(frame)
    dtype = np.uint8 if bits <= 8 else (np.int16 if signed else np.uint16)
    extra: dict[str, Any] = {"WindowCenter": f"{(lo + hi) / 2:.1f}", "WindowWidth": f"{max(1.0, hi - lo):.1f}"}
    if modality == "CT":
        extra = {"RescaleSlope": "1", "RescaleIntercept": "0", "RescaleType": "HU", **extra}
    return ps.Base(frame.astype(dtype)[None], bits, signed, lo, hi, extra)


def _doppler() -> np.ndarray:
    """pydicom's JPEG 2000 Doppler ultrasound (480x640 RGB) with only its sector kept: the
    overlays around it (site, clock, probe, colour bars, caption, scale) become black."""
    rgb = pydicom.dcmread(ps.TEST_FILES / "examples_jpeg2k.dcm").pixel_array
    out = np.zeros_like(rgb)
    out[108:337, 48:596] = rgb[108:337, 48:596]
    return out


def load_base(key: str) -> tuple[Any, list[list[int]]]:
    """(pixel_set.Base with pixels (1, rows, cols[, 3]), boxes of text the base already has)."""
    b = BASES[key]
    if key == "ct_head":
        ds = pydicom.dcmread(ps.TEST_FILES / b.source)
        return _grey_base(ds.pixel_array.astype(np.float64), 13, True, "CT"), []
    if key == "cxr":  # 2140x1760 MONOCHROME1 10-bit; its burned text (top rows, right edge) is cropped away
        arr = pydicom.dcmread(REAL[b.source]).pixel_array.astype(np.float32)[260:1760, 320:1820]
        return _grey_base(cv2.resize(arr, (ps.SIZE, ps.SIZE), interpolation=cv2.INTER_AREA), 10, False, "CR"), []
    if key == "localizer":  # 394x552 CT localizer: the rows with its burned name and DOB are cropped away
        arr = pydicom.dcmread(REAL[b.source]).pixel_array.astype(np.float64)[40:552]
        return _grey_base(arr, 16, True, "CT"), []
    if key == "us_doppler":
        return ps.Base(_doppler()[None], 8, False, 0, 255), []
    if key == "us_doppler_grey":
        grey = np.rint(_doppler().astype(np.float64) @ ps.LUMA).astype(np.uint8)
        return ps.Base(grey[None], 8, False, 0, 255, {"WindowCenter": "127.5", "WindowWidth": "255"}), []
    if key == "petct":
        rgb = pydicom.dcmread(REAL[b.source]).pixel_array
        return ps.Base(rgb[None].astype(np.uint8), 8, False, 0, 255), []
    if key == "us_ybr":  # first frame of the YBR clip, as RGB
        spec = ps.Spec(key, b.source, "rgb", ExplicitVRLittleEndian, "US", b.sop_class, frames=1)
        return ps._load_base(spec), [list(x) for x in ps.PREEXISTING_TEXT[b.source]]
    spec = ps.Spec(key, b.source, b.kind, ExplicitVRLittleEndian, b.modality, b.sop_class)
    return ps._load_base(spec), [list(x) for x in ps.PREEXISTING_TEXT.get(b.source, ())]


# ---------------------------------------------------------------- fonts and glyphs


def _font_path(name: str) -> Path:
    for d in ps.FONT_DIRS:
        if (d / name).is_file():
            return d / name
    sys.exit(f"pixel_heldout: font {name} missing; run: apt-get install -y fonts-dejavu fonts-liberation2")


def _font(name: str, size: int) -> Any:
    if name == PIL_BITMAP:
        return ImageFont.load_default_imagefont()
    return ImageFont.truetype(str(_font_path(name)), size)


def _bitmap_masks(text: str, font: Any, x: int, y: int) -> list[tuple[int, int, np.ndarray]]:
    """pixel_set._char_masks without anti-aliasing: FreeType's mono rendering (or PIL's bitmap
    font), so that every glyph pixel is 0 or 255."""
    freetype = isinstance(font, ImageFont.FreeTypeFont)
    out = []
    for i, ch in enumerate(text):
        if ch.isspace():
            continue
        cx = x + round(font.getlength(text[:i], mode="1") if freetype else font.getlength(text[:i]))
        left, top, right, bottom = font.getbbox(ch)
        w, h = max(1, right - left) + 4, max(1, bottom - top) + 4
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"
        draw.text((2 - left, 2 - top), ch, font=font, fill=255)
        alpha = np.asarray(img)
        ys, xs = np.nonzero(alpha)
        if len(xs) == 0:
            continue
        alpha = np.where(alpha[ys.min(): ys.max() + 1, xs.min(): xs.max() + 1] > 0, 255, 0).astype(np.uint8)
        out.append((cx + left - 2 + int(xs.min()), y + top - 2 + int(ys.min()), alpha))
    return out


@dataclass
class Text:
    """A line to burn: its segments, font and style, and its glyphs laid out at origin (0, 0)."""

    line: Any  # pixel_set.Line
    font: Any
    style: str
    _at0: list[tuple[HField, list[tuple[int, int, np.ndarray]]]] | None = None

    def glyphs(self, x: int, y: int) -> list[tuple[HField, list[tuple[int, int, np.ndarray]]]]:
        if self._at0 is None:  # glyph positions are additive in the origin: render once
            masks = _bitmap_masks if self.style == "bitmap" else ps._char_masks
            self._at0 = [(seg, masks(seg.text, self.font, sx, 0)) for seg, sx in ps._segments_layout(self.line, self.font, 0, 0)]
        return [(seg, [(cx + x, cy + y, a) for cx, cy, a in chars]) for seg, chars in self._at0]

    def extent(self, ink_only: bool) -> list[int]:
        """[x0, y0, x1, y1] of the ink at origin (0, 0): alpha >= pixel_set.INK, or any alpha."""
        boxes = []
        for _, chars in self.glyphs(0, 0):
            for cx, cy, a in chars:
                ys, xs = np.nonzero(a >= ps.INK if ink_only and (a >= ps.INK).any() else a > 0)
                boxes.append([cx + int(xs.min()), cy + int(ys.min()), cx + int(xs.max()) + 1, cy + int(ys.max()) + 1])
        return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


# ---------------------------------------------------------------- burning


class HBurner(ps.Burner):
    """pixel_set.Burner with named ink colours, MONOCHROME1, legibility and frame clipping."""

    def __init__(self, spec: Any, base: Any, mono1: bool) -> None:
        super().__init__(spec, base)
        self.mono1 = mono1
        self.rows, self.cols = base.pixels.shape[1:3]
        self._display: np.ndarray | None = None

    def display(self) -> np.ndarray:
        """Display image 0..1 as burned so far: (rows, cols) for grey, (rows, cols, 3) for colour."""
        if self._display is None:
            if self.spec.kind == "gray":
                lum = self._lum(self.pix[0])
                self._display = 1.0 - lum if self.mono1 else lum
            else:
                self._display = self.pix[0] / 255.0
        return self._display

    def ink(self, colour: str) -> Any:
        if self.spec.kind == "gray":
            lum = GREY_INK[colour]
            return self._value(1.0 - lum if self.mono1 else lum)
        return np.array(RGB_INK[colour], dtype=np.float64)

    def legibility(self, colour: str, box: list[int]) -> float:
        """Share of the background under box at least LEGIBLE_STEP from the ink."""
        x0, y0, x1, y1 = max(0, box[0]), max(0, box[1]), min(self.cols, box[2]), min(self.rows, box[3])
        bg = self.display()[y0:y1, x0:x1]
        if self.spec.kind == "gray":
            diff = np.abs(bg - GREY_INK[colour])
        else:
            diff = np.abs(bg - np.array(RGB_INK[colour]) / 255.0).max(axis=-1)
        return float((diff >= LEGIBLE_STEP).mean()) if diff.size else 0.0

    def burn(self, text: Text, x: int, y: int, colour: str) -> None:
        self._display = None
        value = self.ink(colour)
        stored = np.clip(np.rint(np.asarray(value, dtype=np.float64)), *self._range())
        for seg, chars in text.glyphs(x, y):
            boxes = []
            for cx, cy, alpha in chars:
                cx, cy, alpha = self._clip(cx, cy, alpha)
                if alpha.size and (b := self._burn_char(cx, cy, alpha, 0, 1, value)):
                    boxes.append(b)
            seg.chars = boxes
            seg.box = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
            seg.contrast = seg.colour = colour
            seg.style = text.style
            if text.style == "bitmap":
                seg.ink = [int(v) for v in np.atleast_1d(stored)]

    def _range(self) -> tuple[float, float]:
        b = self.base
        if self.spec.kind != "gray":
            return 0.0, 255.0
        return (-(1 << (b.bits_stored - 1)), (1 << (b.bits_stored - 1)) - 1) if b.signed else (0, (1 << b.bits_stored) - 1)

    def _clip(self, cx: int, cy: int, alpha: np.ndarray) -> tuple[int, int, np.ndarray]:
        """The part of a glyph inside the frame (a line touching the edge may reach past it)."""
        x0, y0 = max(0, -cx), max(0, -cy)
        x1 = min(alpha.shape[1], self.cols - cx)
        y1 = min(alpha.shape[0], self.rows - cy)
        return cx + x0, cy + y0, alpha[y0:y1, x0:x1]


# ---------------------------------------------------------------- placement


def _regions(burner: HBurner, keep_out: list[list[int]], kind: str) -> np.ndarray:
    """Where text over anatomy may go: the body's middle, bone (the brightest structure in the
    body) or ultrasound speckle (the sector), as a float mask of the frame."""
    disp = burner.display()
    lum = disp if disp.ndim == 2 else disp @ ps.LUMA
    u8 = np.clip(lum * 255, 0, 255).astype(np.uint8)
    if kind == "speckle":
        fg = (cv2.blur(u8, (9, 9)) > 10).astype(np.uint8)
    else:
        _, fg = cv2.threshold(cv2.GaussianBlur(u8, (5, 5), 0), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((7, 7), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(fg)
    body = lab == (1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))) if n > 1 else fg.astype(bool)
    inner = cv2.erode(body.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    for x0, y0, x1, y1 in keep_out:
        inner[max(0, y0 - 8):y1 + 8, max(0, x0 - 8):x1 + 8] = False
    if kind == "bone":  # bright thin structure: skull, clavicles, ribs, spine
        tophat = cv2.morphologyEx(u8, cv2.MORPH_TOPHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (31, 31)))
        return (inner & (tophat >= 0.08 * 255) & (lum >= 0.5)).astype(np.float64)
    if kind == "body":
        bright = lum >= max(0.6, float(np.percentile(lum[body], 92)))
        return (inner & ~cv2.dilate(bright.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)).astype(np.float64)
    return inner.astype(np.float64)


class Placer:
    """Finds free spots for boxes: lines of different groups keep PAD apart and off the text the base has."""

    def __init__(self, rows: int, cols: int, keep_out: list[list[int]]) -> None:
        self.rows, self.cols = rows, cols
        self.placed = [list(b) for b in keep_out]

    def free(self, w: int, h: int) -> np.ndarray:
        """free[y, x]: a w x h box with top-left (x, y) is inside the frame and clear of every placed box."""
        ok = np.zeros((self.rows, self.cols), dtype=bool)
        ok[: self.rows - h + 1, : self.cols - w + 1] = True
        for x0, y0, x1, y1 in self.placed:
            ok[max(0, y0 - h - PAD[1] + 1): y1 + PAD[1], max(0, x0 - w - PAD[0] + 1): x1 + PAD[0]] = False
        return ok

    def best(self, w: int, h: int, score: np.ndarray, rng: random.Random, margin: int = MARGIN) -> tuple[int, int] | None:
        ok = self.free(w, h)
        ok[:margin] = ok[:, :margin] = False
        ok[max(0, self.rows - h - margin + 1):] = ok[:, max(0, self.cols - w - margin + 1):] = False
        if not ok.any():
            return None
        jitter = np.random.default_rng(rng.randrange(1 << 30)).random(score.shape) * 1e-3
        y, x = np.unravel_index(int(np.argmax(np.where(ok, score + jitter, -np.inf))), score.shape)
        return int(x), int(y)


def _coverage(mask: np.ndarray, w: int, h: int) -> np.ndarray:
    """cov[y, x]: mean of mask over the w x h box with top-left (x, y) (0 where it leaves the frame)."""
    rows, cols = mask.shape
    s = np.zeros((rows + 1, cols + 1))
    s[1:, 1:] = mask.cumsum(0).cumsum(1)
    cov = np.zeros_like(mask)
    if h <= rows and w <= cols:
        cov[: rows - h + 1, : cols - w + 1] = (s[h:, w:] - s[:-h, w:] - s[h:, :-w] + s[:-h, :-w]) / (w * h)
    return cov


def _toward(rows: int, cols: int, w: int, h: int, anchor: str) -> np.ndarray:
    """Score of each top-left position by closeness of the box to an anchor of the frame."""
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    tx = {"l": 0.0, "r": cols - w, "c": (cols - w) / 2}[anchor[1]]
    ty = {"t": 0.0, "b": rows - h, "m": (rows - h) / 2}[anchor[0]]
    return -(np.abs(xs - tx) + np.abs(ys - ty)) / (rows + cols)


# ---------------------------------------------------------------- one file


class FileBuilder:
    def __init__(self, spec: HSpec, rng: random.Random) -> None:
        self.spec, self.rng = spec, rng
        self.bdef = BASES[spec.base]
        base, self.keep_out = load_base(spec.base)
        self.pspec = ps.Spec(spec.name, self.bdef.source, self.bdef.kind, spec.syntax, self.bdef.modality, self.bdef.sop_class)
        self.burner = HBurner(self.pspec, base, self.bdef.mono1)
        self.rows, self.cols = self.burner.rows, self.burner.cols
        self.placer = Placer(self.rows, self.cols, self.keep_out)
        self.palette = RGB_PALETTE if self.bdef.kind == "rgb" else GREY_PALETTE
        self.fields: list[HField] = []

    def font(self) -> tuple[str, int, str]:
        """(font name, size, label) in the file's style."""
        rng = self.rng
        if self.spec.style == "bitmap":
            name = rng.choice((PIL_BITMAP, *MONO_FONTS))
            return (name, 11, name) if name == PIL_BITMAP else (name, rng.randint(8, 14), f"{name} (mono)")
        name = rng.choice(AA_FONTS)
        return name, rng.randint(10, 22), name

    def text(self, segs: list[HField], font: tuple[str, int, str] | None = None) -> Text:
        name, size, label = font or self.font()
        return Text(ps.Line(segs, "", "", size, label), _font(name, size), self.spec.style)

    def colour_for(self, wanted: str, items: list[tuple[Text, int, int]]) -> tuple[str, float]:
        """(colour, legibility of the least legible character): wanted, or the next colour of
        the palette, the first in which every character of the lines (Text at origin x, y)
        is legible over what lies under it (legibility >= LEGIBLE_SHARE); else the most
        legible colour (the caller looks for another spot): no character is labelled that
        no one could read."""
        i = self.palette.index(wanted)
        order = self.palette[i:] + self.palette[:i]
        boxes = [[cx, cy, cx + a.shape[1], cy + a.shape[0]] for t, x, y in items for _, chars in t.glyphs(x, y)
                 for cx, cy, a in chars]
        scored = []
        for colour in order:
            worst = min(self.burner.legibility(colour, b) for b in boxes)
            if worst >= LEGIBLE_SHARE:
                return colour, worst
            scored.append((colour, worst))
        return max(scored, key=lambda cw: cw[1])

    def put(self, text: Text, x: int, y: int, colour: str, legible: float, region: str, anchor: str, edge: str = "") -> None:
        ext = text.extent(False)
        self.burner.burn(text, x, y, colour)
        for seg in text.line.segments:
            seg.font, seg.size, seg.anchor, seg.region, seg.edge, seg.legible = (
                text.line.font, text.line.size, anchor, region, edge, legible)
            self.fields.append(seg)
        self.placer.placed.append([x + ext[0], y + ext[1], x + ext[2], y + ext[3]])

    def block(self, lines: list[list[HField]], region: str) -> bool:
        """The patient block over the region: lines left-aligned, a few pixels apart, in one
        font and colour (smaller where the block does not fit)."""
        name, size, label = self.font()
        if self.spec.style == "aa":
            size = self.rng.randint(10, 18)
        mask = _regions(self.burner, self.keep_out, region)
        sizes = {size} if name == PIL_BITMAP else {size, max(8 if self.spec.style == "bitmap" else 10, size - 4)}
        for sz in sorted(sizes, reverse=True):
            texts = [self.text(segs, (name, sz, label)) for segs in lines]
            exts = [t.extent(False) for t in texts]
            gap = max(3, sz // 4)
            w = max(e[2] - e[0] for e in exts)
            h = sum(e[3] - e[1] for e in exts) + gap * (len(exts) - 1)
            score = _coverage(mask, w, h)
            if region in ("body", "speckle"):  # the middle of it
                ys, xs = np.nonzero(mask) if mask.any() else (np.array([self.rows / 2]), np.array([self.cols / 2]))
                score = score + 0.5 * _toward_point(self.rows, self.cols, w, h, float(xs.mean()), float(ys.mean()))
            best: tuple[float, list[tuple[Text, int, int]], str] | None = None
            for _ in range(TRIES):
                spot = self.placer.best(w, h, score, self.rng)
                if spot is None:
                    break
                items, top = [], spot[1]
                for t, e in zip(texts, exts, strict=True):
                    items.append((t, spot[0] - e[0], top - e[1]))
                    top += e[3] - e[1] + gap
                colour, legible = self.colour_for(self.spec.colour, items)
                if best is None or legible > best[0]:
                    best = (legible, items, colour)
                if legible >= LEGIBLE_SHARE:
                    break
                _exclude(score, spot, w, h)
            # over busy anatomy (MR abdomen) no spot may be legible throughout in one colour: the
            # most legible spot tried, if its worst character is still mostly readable
            if best is not None and best[0] >= LEGIBLE_FLOOR:
                for t, x, y in best[1]:
                    self.put(t, x, y, best[2], best[0], region, "mid")
                return True
        return False

    def line_at(self, segs: list[HField], anchor: str, region: str, mask: np.ndarray | None = None) -> bool:
        """One line over the region's mask, or as near an anchor of the frame as there is room."""
        t = self.text(segs)
        e = t.extent(False)
        w, h = e[2] - e[0], e[3] - e[1]
        score = _coverage(mask, w, h) if mask is not None else _toward(self.rows, self.cols, w, h, anchor)
        wanted = self.rng.choice(self.palette)
        for _ in range(TRIES):
            spot = self.placer.best(w, h, score, self.rng)
            if spot is None:
                return False
            item = (t, spot[0] - e[0], spot[1] - e[1])
            colour, legible = self.colour_for(wanted, [item])
            if legible < LEGIBLE_SHARE:
                _exclude(score, spot, w, h)
                continue
            self.put(*item, colour, legible, region, "mid" if mask is not None else anchor)
            return True
        return False

    def edge_line(self, segs: list[HField], edge: str) -> bool:
        """A line whose ink touches the frame's edge: starts in column 0, ends in the last
        column, starts in row 0 or ends in the last row."""
        t = self.text(segs)
        ink, full = t.extent(True), t.extent(False)
        w, h = full[2] - full[0], full[3] - full[1]
        if edge in ("left", "right"):
            x = -ink[0] if edge == "left" else self.cols - ink[2]
            spots = [(x + full[0], by) for by in range(MARGIN, self.rows - h - MARGIN)]
        else:
            y = -ink[1] if edge == "top" else self.rows - ink[3]
            spots = [(bx, y + full[1]) for bx in range(MARGIN, self.cols - w - MARGIN)]
        self.rng.shuffle(spots)
        wanted = self.rng.choice(self.palette)
        anchor = f"edge-{edge}"  # not "ml"/"mr", which bench_pixels.py counts as the middle
        for bx, by in spots:
            box = [bx, by, bx + w, by + h]
            if any(ps._overlaps(box, p, *PAD) for p in self.placer.placed):
                continue
            item = (t, bx - full[0], by - full[1])
            colour, legible = self.colour_for(wanted, [item])
            if legible >= LEGIBLE_SHARE:
                self.put(*item, colour, legible, "edge", anchor, edge)
                return True
        return False


def _exclude(score: np.ndarray, spot: tuple[int, int], w: int = 40, h: int = 40) -> None:
    """Rule a spot and its neighbours (a third of the box's size around it) out of a placement score."""
    x, y = spot
    rx, ry = max(12, w // 3), max(12, h // 3)
    score[max(0, y - ry): y + ry, max(0, x - rx): x + rx] = -np.inf


def _toward_point(rows: int, cols: int, w: int, h: int, px: float, py: float) -> np.ndarray:
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    return -(np.abs(xs + w / 2 - px) + np.abs(ys + h / 2 - py)) / (rows + cols)


def _build_file(spec: HSpec, rng: random.Random, who: Any) -> FileBuilder:
    fb = FileBuilder(spec, rng)
    if not fb.block(_block(rng, who), spec.region):
        raise RuntimeError(f"{spec.name}: no room for the patient block")
    pool = list(NON_PHI[fb.bdef.modality])
    rng.shuffle(pool)
    mask = _regions(fb.burner, fb.keep_out, spec.region)
    for text in pool[:2]:  # scanner text over the same anatomy
        fb.line_at([HField(text, "non-phi", "annotation")], "mm", spec.region, mask)
    for text in pool[2:4]:
        fb.line_at([HField(text, "non-phi", "annotation")], rng.choice(("tl", "tr", "bl", "br")), "corner")
    edges = [rng.choice(("left", "right")), rng.choice(("top", "bottom"))]
    if rng.random() < 0.5:
        edges.append("right" if edges[0] == "left" else "left")
    opposite = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}
    for edge in edges:
        segs = _edge_text(rng, who)
        if not (fb.edge_line(segs, edge) or fb.edge_line(segs, opposite[edge])):
            raise RuntimeError(f"{spec.name}: no room for a line on the {edge} or {opposite[edge]} edge")
    ps._check_no_overlap(spec.name, fb.fields)
    return fb


def build(out: Path = DEFAULT_OUT, seed: int = FIRST_HELDOUT_SEED, limit: int | None = None,
          skip_missing: bool = False) -> dict[str, Any]:
    """Writes the set and labels.json into out; returns the labels document. skip_missing:
    leave out the files whose real base (REAL) is absent, e.g. ../shared beside a bare
    clone; the files after them then differ from a full build's (the seed's draws shift)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    labels: dict[str, Any] = {
        "version": 1,
        "generator": "pixel_heldout",
        "seed": seed,
        "box_convention": "[x0, y0, x1, y1] half-open; x is the column; frames [first, stop)",
        "files": {},
    }
    for index, spec in enumerate(SPECS[:limit]):
        source = BASES[spec.base].source
        if skip_missing and source in REAL and not REAL[source].is_file():
            continue
        who = _identity(rng)
        fb = _build_file(spec, rng, who)
        pixels = fb.burner.result()
        ds = ps._dataset(fb.pspec, who, fb.burner.base, pixels, index)
        ds.Rows, ds.Columns = fb.rows, fb.cols
        ds.StudyDescription = "BENCH PIXELS HELDOUT"
        if fb.bdef.mono1:
            ds.PhotometricInterpretation = "MONOCHROME1"
        ps._encode(ds, fb.pspec, pixels)
        for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):  # after _encode: compress() draws a random SOP UID
            setattr(ds, kw, generate_uid(entropy_srcs=["phiscrub-bench-heldout", str(seed), spec.name, kw]))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        name = f"{index:02d}_{spec.name}.dcm"
        ds.save_as(out / name, enforce_file_format=True)
        decoded = pydicom.dcmread(out / name).pixel_array
        if decoded.shape[:2] != (fb.rows, fb.cols):
            raise RuntimeError(f"{name}: decoded shape {decoded.shape}, expected {(fb.rows, fb.cols)}")
        labels["files"][name] = {
            "source": fb.bdef.source,
            "base": spec.base,
            "modality": fb.bdef.modality,
            "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
            "syntax_name": ds.file_meta.TransferSyntaxUID.name,
            "lossy": spec.syntax == JPEGBaseline8Bit,
            "photometric": str(ds.PhotometricInterpretation),
            "bits_stored": fb.burner.base.bits_stored,
            "signed": fb.burner.base.signed,
            "rows": fb.rows,
            "cols": fb.cols,
            "frames": 1,
            "region": spec.region,
            "style": spec.style,
            "fields": [f.label() for f in fb.fields],
            "preexisting_text": [list(b) for b in fb.keep_out],
        }
    (out / "labels.json").write_text(json.dumps(labels, indent=1))
    return labels


def summary(labels: dict[str, Any]) -> str:
    files = labels["files"]
    fields = [f for e in files.values() for f in e["fields"]]
    kinds = {k: sum(1 for f in fields if f["kind"] == k) for k in ("phi", "non-phi", "label")}
    edge = sum(1 for f in fields if f.get("edge"))
    bitmap = sum(1 for e in files.values() if e.get("style") == "bitmap")
    return (f"{len(files)} files ({bitmap} in a bitmap font), {kinds['phi']} PHI fields, {kinds['non-phi']} non-PHI fields, "
            f"{kinds['label']} captions, {edge} fields on the frame's edge")


# ---------------------------------------------------------------- report


def _categories(f: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    size = f["size"]
    band = "8-11px" if size <= 11 else ("12-16px" if size <= 16 else "17-22px")
    colour_kind = "colour image" if entry["photometric"] not in ("MONOCHROME1", "MONOCHROME2") else "grey image"
    return [f"region  {f.get('region', '?')}", f"colour  {f.get('colour', '?')} ({colour_kind})", f"style   {f.get('style', '?')}",
            f"size    {band}", f"edge    {f.get('edge') or 'no'}", f"field   {f['what']}", f"image   {entry['photometric']}",
            f"syntax  {entry['syntax_name']}"]


def report(out: Path) -> None:
    """PHI recall and non-PHI kept by the held-out set's categories, from bench_pixels.py's results.json."""
    labels = json.loads((out / "labels.json").read_text())
    results = json.loads((out / "results.json").read_text())
    tools = [t for t in results if t.startswith(("phiscrub", "presidio")) and results[t]["files"]]
    for kind, key, title in (("phi", "phi_covered", "PHI recall"), ("non-phi", "non_phi_kept", "non-PHI kept")):
        groups: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, entry in labels["files"].items():
            of_kind = [f for f in entry["fields"] if f["kind"] == kind]
            for i, f in enumerate(of_kind):
                for cat in _categories(f, entry):
                    groups[cat].append((name, i))
        print(f"\n{title} by held-out category (fields):")
        print(f"{'category':<44}" + "".join(f"{t:>24}" for t in tools))
        for cat, members in sorted(groups.items()):
            cells = []
            for t in tools:
                files = results[t]["files"]
                vals = [files[n][key][i] for n, i in members if n in files and i < len(files[n][key])]
                cells.append(f"{sum(vals) / len(vals):>24.3f}" if vals else f"{'n/a':>24}")
            print(f"{cat + f' ({len(members)})':<44}" + "".join(cells))
    for t in tools:
        missed = []
        for name, entry in labels["files"].items():
            phis = [f for f in entry["fields"] if f["kind"] == "phi"]
            error = results[t]["files"][name]["error"]
            for f, ok in zip(phis, results[t]["files"][name]["phi_covered"], strict=False):
                if not ok:
                    missed.append(f"{name}: {f['what']} ({f['region']}, {f['colour']}, {f['style']}, {f['size']}px"
                                  + (f", {f['edge']} edge" if f.get("edge") else "")
                                  + (f"; no output: {error}" if error else "") + ")")
        print(f"\n{t}: {len(missed)} PHI field(s) missed" + ("".join(f"\n  {m}" for m in missed)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=FIRST_HELDOUT_SEED, help=f"held-out seeds start at {FIRST_HELDOUT_SEED}")
    ap.add_argument("--limit", type=int, default=None, help="build only the first N files")
    ap.add_argument("--report", action="store_true", help="print recall by category from OUT/results.json; build nothing")
    args = ap.parse_args(argv)
    if args.report:
        report(args.out)
        return
    if args.seed < FIRST_HELDOUT_SEED:
        ap.error(f"held-out seeds are >= {FIRST_HELDOUT_SEED} (seeds below it are not held out)")
    missing = [n for n in REAL.values() if not n.is_file()]
    if missing:
        sys.exit(f"pixel_heldout: real base images missing: {', '.join(map(str, missing))}")
    labels = build(args.out, args.seed, args.limit)
    print(f"pixel_heldout: wrote {summary(labels)} to {args.out}")


if __name__ == "__main__":
    main()

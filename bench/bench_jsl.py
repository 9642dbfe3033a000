"""Burned-in text redaction on the JSL set: python bench/bench_jsl.py [--subset tune|report|both]

Why: phiscrub's pixel stage removes text burned into images, and the only way to know how
much PHI it leaves behind (and how much anatomy it wipes) is to score it against images whose
text positions are known. JohnSnowLabs/dicom-deid-dataset (commit dd6f029, ``dicom_files/``:
445 CT, MR, MG, DX and CR files with synthetic PHI burned over real anatomy, derived from
TCIA's Pseudo-PHI-DICOM-Data, CC BY 4.0) ships, per file, a JSON list of burned-in
``key`` (label, e.g. "Patient ID:") and ``value`` (the PHI itself) boxes, ``[x0, y0, x1, y1]``
in image pixels, x then y, corners inclusive. The files live in the git-ignored
``bench/out/jsl/dicom_files/`` and are never committed.

Split, by patient (the number before the file name's first underscore), fixed here:
TUNE (12 patients, 199 files) may be looked at and used to choose settings; REPORT (3
patients, 246 files) is held out: it is only ever scored, and must never be used to choose
settings, thresholds or code (nor its miss pictures looked at while tuning). The two subsets
are always reported as separate tables.

Rows (``--redactors``): ``noop`` (returns its input), ``oracle`` (fills every ground-truth
value box with the median of its source ring), ``rapidocr`` (the rapidocr wheel run plainly:
its bundled PP-OCR det + rec models, rapidocr's default settings otherwise, one thread, no
angle classifier, on a min-max scaled 8-bit view; every detected polygon's bounding rectangle
is filled with the image minimum, black for RGB), ``phiscrub-all``, ``phiscrub-sensitive`` and
``phiscrub-auto`` (``transform_dicom`` with ``clean_pixel_data`` and ``pixels.text_redaction``
all, sensitive or auto, the last being what the default configuration runs, plus
``--phiscrub-pixels``). ``noop`` must score recall 0 and ``oracle`` recall 1 with no
non-text pixel altered; otherwise the metric code is wrong and the script exits 2.

Metrics, on decoded pixel arrays (pydicom ``pixel_array``, first frame of a multi-frame
image), each output compared with its own source, boxes clipped to the image:

- Ring of a box: the pixels in a band 3 px wide just outside the ground-truth box. Ring level:
  the median of the ring (per channel for RGB); the source's ring level is taken in the
  SOURCE image, the output's in the OUTPUT image.
- Contrast of a pixel: |pixel - ring level|; for RGB the per-pixel max over channels of the
  absolute difference.
- Ink of a box: the pixels inside the box whose source contrast exceeds a quarter of the
  box's strongest source contrast (max over the box). A box with no ink is covered.
- An ink pixel has lost its contrast when |out - ring level_out| <= 0.3 x |src - ring
  level_src| (it lost at least 70%), so any fill colour, blur or inpainting can pass and doing
  nothing cannot. Ink share lost: the fraction of the ink that has.
- Value box covered: ink share lost >= 0.95.
- PHI value recall: covered value boxes / all value boxes (every ``value`` of this set is
  PHI), overall and per key type (Name, Patient ID, DOB, ...). Values with empty text and a
  [0, 0, 0, 0] box (nothing burned in) and boxes wholly outside the image (text burned past
  the edge) are left out, and counted; boxes partly outside are clipped. Value boxes with no ink in
  the source (white text over a saturated white region, a box clipped to one blank row at the
  image's edge) count as covered for every redactor, no-op included; the tables say how many
  there are, and the no-op check is that it covers those and nothing else.
- Key-box coverage (informative): the share of key (label) boxes covered by the same test.
  Keys without a box (not burned in) are left out.
- Clean images: files where every value box is covered.
- Non-text altered: per file, the fraction of the pixels outside every ground-truth key and
  value box grown by 3 px on each side that changed by more than 6% of the image's range
  (source max - source min); mean and max over files.
- Seconds per image: per redactor, one process, ``time.perf_counter`` around the redactor's
  call from the file's bytes (phiscrub: parse, header de-identification, pixel stage and
  write; rapidocr: pixel decoding, OCR and fill), after an untimed warm-up on one file.

A redactor that raises (phiscrub's quarantine) counts as failed: the file is not clean, all
its values are uncovered, and it is left out of the non-text means.

Examples::

    python bench/bench_jsl.py --self-test
    python bench/bench_jsl.py --subset tune --stride 4 --redactors noop,oracle,rapidocr,phiscrub-all
    python bench/bench_jsl.py --subset tune --json /tmp/jsl.json --save-misses /tmp/jsl_misses
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / "out" / "jsl" / "dicom_files"

TUNE = ("6670427471", "571403367", "6415974217", "339833062", "9189822998", "8155012288", "6774825273", "8989193730",
        "8189244869", "7361647728", "4025360156", "292821506")
REPORT = ("3209648408", "9894340694", "8732322741")
SUBSETS = {"tune": TUNE, "report": REPORT}
TITLES = {"tune": "tune", "report": "report (held out)"}

RING = 3  # px, the band just outside a box whose median is the box's background
INK = 0.25  # ink: source contrast above this share of the box's strongest contrast
KEPT = 0.3  # an ink pixel lost its contrast when at most this share of it is left
COVERED = 0.95  # share of the ink that must have lost its contrast
GROW = 3  # px each side: boxes grown by this are left out of the non-text count
ALTERED = 0.06  # a pixel is altered when it moved by more than this share of the image's range

REDACTORS = ("noop", "oracle", "rapidocr", "phiscrub-all", "phiscrub-sensitive", "phiscrub-auto")
KEY = b"bench-key-0123456789abcdef"


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Box:
    """One ground-truth box, corners inclusive, clipped to the image."""

    label: str  # the key type: "Patient ID", "DOB", ...
    text: str
    x0: int
    y0: int
    x1: int
    y1: int

    def bbox(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass
class Sample:
    """One file: its bytes, its decoded first frame and its ground truth."""

    name: str
    patient: str
    data: bytes
    src: np.ndarray
    photometric: str
    values: list[Box]
    keys: list[Box]
    skipped_values: int = 0  # empty values with a [0, 0, 0, 0] box, boxes wholly outside the image
    skipped_keys: int = 0  # keys with no box
    inkless_values: int = 0  # value boxes with no ink in the source: covered by anything


def list_files(data_dir: Path, subset: str, stride: int, limit: int | None) -> list[Path]:
    """The subset's .dcm files sorted by name, every ``stride``-th, then the first ``limit``."""
    patients = set(SUBSETS[subset])
    files = sorted(p for p in data_dir.glob("*.dcm") if p.name.split("_", 1)[0] in patients)
    files = files[::max(1, stride)]
    return files if limit is None else files[:limit]


def first_frame(ds: Any) -> np.ndarray:
    """The decoded pixels of the first frame."""
    arr = np.asarray(ds.pixel_array)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    return arr[0] if frames > 1 else arr


def decode(data: bytes) -> tuple[np.ndarray, str]:
    """First frame and photometric interpretation of a DICOM file's bytes."""
    import pydicom

    ds = pydicom.dcmread(BytesIO(data))
    return first_frame(ds), str(getattr(ds, "PhotometricInterpretation", ""))


def _clip(label: str, text: str, bbox: list[int], h: int, w: int) -> Box | None:
    x0, y0, x1, y1 = (int(v) for v in bbox)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w - 1, x1), min(h - 1, y1)
    return Box(label, text, x0, y0, x1, y1) if x1 >= x0 and y1 >= y0 else None


def _boxes(annotation: list[dict[str, Any]], part: str, h: int, w: int) -> tuple[list[Box], int]:
    """The ``part`` ("key" or "value") boxes of one file, and how many were left out."""
    out: list[Box] = []
    skipped = 0
    for item in annotation:
        entry = item.get(part) or {}
        bbox = entry.get("bbox")
        label = str((item.get("key") or {}).get("text", "?"))
        box = _clip(label, str(entry.get("text", "")), bbox, h, w) if bbox and any(bbox) else None
        if box is None:
            skipped += 1
        else:
            out.append(box)
    return out, skipped


def load(path: Path) -> Sample:
    data = path.read_bytes()
    src, photometric = decode(data)
    annotation = json.loads(path.with_suffix(".json").read_text())["annotation"]
    h, w = src.shape[:2]
    values, skipped_values = _boxes(annotation, "value", h, w)
    keys, skipped_keys = _boxes(annotation, "key", h, w)
    inkless = sum(ink_lost(src, src, b)[0] == 0 for b in values)
    return Sample(path.name, path.name.split("_", 1)[0], data, src, photometric, values, keys, skipped_values, skipped_keys, inkless)


# ---------------------------------------------------------------- metrics


def _window(shape: tuple[int, ...], box: Box, grow: int) -> tuple[tuple[slice, slice], np.ndarray]:
    """The box grown by ``grow`` (clipped) as slices, and a mask of the box inside that window."""
    h, w = shape[:2]
    wy0, wy1 = max(0, box.y0 - grow), min(h, box.y1 + 1 + grow)
    wx0, wx1 = max(0, box.x0 - grow), min(w, box.x1 + 1 + grow)
    inner = np.zeros((wy1 - wy0, wx1 - wx0), dtype=bool)
    inner[box.y0 - wy0:box.y1 + 1 - wy0, box.x0 - wx0:box.x1 + 1 - wx0] = True
    return (slice(wy0, wy1), slice(wx0, wx1)), inner


def ring_level(img: np.ndarray, box: Box) -> np.ndarray:
    """Median of the 3 px band just outside the box (per channel); the box's own median if
    the box fills the image and has no ring."""
    win, inner = _window(img.shape, box, RING)
    pixels = img[win].astype(np.float64)
    ring = pixels[~inner]
    return np.median(ring if ring.size else pixels[inner], axis=0)


def contrast(pixels: np.ndarray, level: np.ndarray) -> np.ndarray:
    """|pixel - level|, max over channels for colour (pixels: (N,) or (N, C))."""
    d = np.abs(pixels.astype(np.float64) - level)
    return d.max(axis=1) if d.ndim == 2 else d


def ink_lost(src: np.ndarray, out: np.ndarray, box: Box) -> tuple[int, float]:
    """(ink pixels, share of them that lost >= 70% of their contrast to the ring); (0, 1.0)
    for a box with no ink."""
    win, inner = _window(src.shape, box, 0)
    c_src = contrast(src[win][inner], ring_level(src, box))
    peak = float(c_src.max()) if c_src.size else 0.0
    ink = c_src > INK * peak
    if peak <= 0.0 or not ink.any():
        return 0, 1.0
    c_out = contrast(out[win][inner], ring_level(out, box))
    lost = c_out[ink] <= KEPT * c_src[ink]
    return int(ink.sum()), float(lost.mean())


def non_text_altered(src: np.ndarray, out: np.ndarray, boxes: Iterable[Box]) -> float:
    """Share of the pixels outside every box grown by 3 px that moved by > 6% of the range."""
    keep = np.ones(src.shape[:2], dtype=bool)
    for b in boxes:
        keep[max(0, b.y0 - GROW):b.y1 + 1 + GROW, max(0, b.x0 - GROW):b.x1 + 1 + GROW] = False
    if not keep.any():
        return 0.0
    span = float(src.max()) - float(src.min())
    diff = np.abs(src.astype(np.float64) - out.astype(np.float64))
    if diff.ndim == 3:
        diff = diff.max(axis=2)
    return float((diff[keep] > ALTERED * span).mean())


# ---------------------------------------------------------------- redactors

Redactor = Callable[[Sample], "np.ndarray | bytes"]


def noop(sample: Sample) -> np.ndarray:
    return sample.src.copy()


def oracle(sample: Sample) -> np.ndarray:
    """Every ground-truth value box filled with its source ring's median (all medians taken
    before any fill)."""
    src = sample.src
    levels = [ring_level(src, b) for b in sample.values]
    out = src.copy()
    for b, level in zip(sample.values, levels, strict=True):
        out[b.y0:b.y1 + 1, b.x0:b.x1 + 1] = np.round(level).astype(src.dtype)
    return out


def eight_bit(arr: np.ndarray) -> np.ndarray:
    """8-bit view: uint8 RGB as is, anything else min-max scaled to 0..255 (MONOCHROME1 left
    as is)."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class PlainRapidOcr:
    """rapidocr's RapidOCR with the det/rec models inside the wheel (the files phiscrub's
    engine loads; nothing is downloaded), one thread, no angle classifier, rapidocr's own
    defaults for everything else (detector limits and thresholds, text_score 0.5)."""

    DET, REC, CLS = "PP-OCRv6_det_small.onnx", "PP-OCRv6_rec_small.onnx", "ch_ppocr_mobile_v2.0_cls_mobile.onnx"

    def __init__(self) -> None:
        import logging

        import rapidocr
        from rapidocr import RapidOCR

        root = Path(rapidocr.__file__).resolve().parent / "models"
        missing = [n for n in (self.DET, self.REC) if not (root / n).is_file()]
        if missing:
            raise FileNotFoundError(f"rapidocr models missing from the wheel (no download is attempted): {missing}")
        ort = "EngineConfig.onnxruntime."
        self._ocr = RapidOCR(params={
            "Global.log_level": "error",
            "Global.use_cls": False,
            "Global.model_root_dir": str(root),
            "Det.model_path": str(root / self.DET),
            "Rec.model_path": str(root / self.REC),
            "Cls.model_path": str(root / self.CLS),  # never None: rapidocr would fetch it if asked to load it
            ort + "intra_op_num_threads": 1,
            ort + "inter_op_num_threads": 1,
        })
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)

    def rects(self, view: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Bounding rectangles (x0, y0, x1, y1 inclusive, clipped) of the detected lines."""
        bgr = view[:, :, ::-1] if view.ndim == 3 else np.repeat(view[:, :, None], 3, axis=2)
        res = self._ocr(np.ascontiguousarray(bgr), use_det=True, use_cls=False, use_rec=True)
        boxes = getattr(res, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        h, w = view.shape[:2]
        out = []
        for quad in boxes:
            q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
            x0, y0 = max(0, int(np.floor(q[:, 0].min()))), max(0, int(np.floor(q[:, 1].min())))
            x1, y1 = min(w - 1, int(np.ceil(q[:, 0].max()))), min(h - 1, int(np.ceil(q[:, 1].max())))
            if x1 >= x0 and y1 >= y0:
                out.append((x0, y0, x1, y1))
        return out

    def __call__(self, sample: Sample) -> np.ndarray:
        arr, _ = decode(sample.data)
        out = arr.copy()
        fill = 0 if arr.ndim == 3 else arr.min()
        for x0, y0, x1, y1 in self.rects(eight_bit(arr)):
            out[y0:y1 + 1, x0:x1 + 1] = fill
        return out


class Phiscrub:
    """phiscrub in-process: transform_dicom with clean_pixel_data and the given text mode."""

    def __init__(self, mode: str, extra: dict[str, Any]) -> None:
        from phiscrub.keys import KeyRing
        from phiscrub.policy.config import from_mapping
        from phiscrub.transform import transform_dicom

        self._transform = transform_dicom
        self.cfg = from_mapping({"options": ["clean_pixel_data"], "pixels": {"text_redaction": mode, **extra}})
        self.keys = KeyRing(KEY)
        self.digest = self.cfg.policy.digest()
        self.last_manifest: Any = None

    def __call__(self, sample: Sample) -> bytes:
        self.last_manifest = None
        out = self._transform(sample.data, self.cfg, self.keys, self.digest)
        self.last_manifest = (out.manifest or {}).get("pixels")
        return out.data


def make_redactor(name: str, extra: dict[str, Any]) -> Redactor:
    if name == "noop":
        return noop
    if name == "oracle":
        return oracle
    if name == "rapidocr":
        return PlainRapidOcr()
    if name.startswith("phiscrub-"):
        return Phiscrub(name.removeprefix("phiscrub-"), extra)
    raise SystemExit(f"unknown redactor {name!r}; known: {', '.join(REDACTORS)}")


# ---------------------------------------------------------------- scoring


@dataclass
class BoxResult:
    label: str
    text: str
    bbox: list[int]
    covered: bool
    ink_pixels: int
    ink_share_lost: float


@dataclass
class FileResult:
    file: str
    patient: str
    seconds: float
    error: str | None = None
    non_text_altered: float | None = None
    values: list[BoxResult] = field(default_factory=list)
    keys: list[BoxResult] = field(default_factory=list)
    pixels_manifest: Any = None
    clean: bool = False  # every value box covered


def score_boxes(src: np.ndarray, out: np.ndarray | None, boxes: list[Box]) -> list[BoxResult]:
    """Each box's coverage; every box uncovered when there is no comparable output."""
    results = []
    for b in boxes:
        ink, lost = ink_lost(src, out, b) if out is not None else (-1, 0.0)
        results.append(BoxResult(b.label, b.text, b.bbox(), out is not None and lost >= COVERED, ink, round(lost, 4)))
    return results


def run_one(redactor: Redactor, sample: Sample) -> tuple[FileResult, np.ndarray | None]:
    """Run one redactor on one file (timed) and score its output; the result and the output."""
    error: str | None = None
    out: np.ndarray | None = None
    t = time.perf_counter()
    try:
        produced = redactor(sample)
    except Exception as exc:  # quarantine, or a redactor's own failure: the file is not clean
        produced, error = None, f"{type(exc).__name__}: {exc}"[:300]
    seconds = time.perf_counter() - t
    if produced is not None:
        out, error = _as_array(produced, sample.src.shape)
    result = FileResult(sample.name, sample.patient, round(seconds, 4), error)
    result.pixels_manifest = getattr(redactor, "last_manifest", None)
    result.values = score_boxes(sample.src, out, sample.values)
    result.keys = score_boxes(sample.src, out, sample.keys)
    if out is not None:
        result.non_text_altered = round(non_text_altered(sample.src, out, sample.values + sample.keys), 6)
    result.clean = error is None and all(v.covered for v in result.values)
    return result, out


def _as_array(produced: np.ndarray | bytes, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str | None]:
    """The output's first frame, or the reason it cannot be compared with the source."""
    try:
        out = decode(produced)[0] if isinstance(produced, bytes) else produced
    except Exception as exc:
        return None, f"output not decodable: {type(exc).__name__}: {exc}"[:300]
    if out.shape != shape:
        return None, f"output shape {out.shape} != source {shape}"
    return out, None


# ---------------------------------------------------------------- summaries


@dataclass
class Summary:
    redactor: str
    files: int
    failed: int
    values: int
    covered: int
    clean: int
    keys: int
    keys_covered: int
    non_text_mean: float | None
    non_text_max: float | None
    seconds_mean: float
    seconds_median: float
    by_label: dict[str, tuple[int, int]]  # label -> (covered, total)

    @property
    def recall(self) -> float:
        return self.covered / self.values if self.values else float("nan")


def summarise(name: str, results: list[FileResult]) -> Summary:
    values = [v for r in results for v in r.values]
    keys = [k for r in results for k in r.keys]
    nt = [r.non_text_altered for r in results if r.non_text_altered is not None]
    secs = [r.seconds for r in results] or [0.0]
    by_label: dict[str, tuple[int, int]] = {}
    for v in values:
        c, n = by_label.get(v.label, (0, 0))
        by_label[v.label] = (c + v.covered, n + 1)
    return Summary(
        name, len(results), sum(r.error is not None for r in results), len(values), sum(v.covered for v in values),
        sum(r.clean for r in results), len(keys), sum(k.covered for k in keys),
        statistics.fmean(nt) if nt else None, max(nt) if nt else None,
        statistics.fmean(secs), statistics.median(secs), by_label,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def table(title: str, samples: list[Sample], summaries: list[Summary], skipped: dict[str, str]) -> str:
    """The subset's plain-text tables: one row per redactor, then recall per key type."""
    def total(attr: str) -> int:
        return sum(getattr(s, attr) for s in samples)

    nvals, nkeys = sum(len(s.values) for s in samples), sum(len(s.keys) for s in samples)
    lines = [
        f"== {title}: {len(samples)} files, {len({s.patient for s in samples})} patients, {nvals} value boxes, {nkeys} key boxes ==",
        f"(left out: {total('skipped_values')} values with no box in the image, {total('skipped_keys')} keys without a box; "
        f"{total('inkless_values')} value boxes have no ink and count as covered for every redactor)",
        f"{'redactor':<20}{'files':>6}{'failed':>7}{'PHI recall':>18}{'clean images':>16}{'key boxes':>16}"
        f"{'non-text mean':>15}{'max':>9}{'s/image':>9}{'median':>8}",
    ]
    for s in summaries:
        lines.append(
            f"{s.redactor:<20}{s.files:>6}{s.failed:>7}{f'{s.recall:.3f} ({s.covered}/{s.values})':>18}"
            f"{f'{s.clean}/{s.files}':>16}{f'{s.keys_covered / s.keys if s.keys else 0:.3f} ({s.keys_covered})':>16}"
            f"{_pct(s.non_text_mean):>15}{_pct(s.non_text_max):>9}{s.seconds_mean:>9.3f}{s.seconds_median:>8.3f}")
    for name, why in skipped.items():
        lines.append(f"{name:<20} skipped: {why}")
    totals: dict[str, int] = {}
    for s in summaries:
        for lbl, (_, n) in s.by_label.items():
            totals[lbl] = max(n, totals.get(lbl, 0))
    if totals:
        lines.append("")
        lines.append(f"{'PHI recall by key':<20}{'boxes':>6}" + "".join(f"{s.redactor:>20}" for s in summaries))
        for lbl, total in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
            cells = "".join(f"{_ratio(*s.by_label.get(lbl, (0, 0))):>20}" for s in summaries)
            lines.append(f"{lbl:<20}{total:>6}{cells}")
    return "\n".join(lines)


def _ratio(covered: int, total: int) -> str:
    return f"{covered / total:.3f}" if total else "-"


def baseline_problems(summaries: list[Summary], results: dict[str, list[FileResult]], inkless: int) -> list[str]:
    """What is wrong with the metric code, judged by the baselines' scores: no-op must cover
    no value box with ink (recall 0 but for the inkless boxes), the oracle every box, and
    alter nothing outside them."""
    problems = []
    for s in summaries:
        inked = [v for r in results[s.redactor] for v in r.values if v.covered and v.ink_pixels != 0]
        if s.redactor == "noop" and (inked or s.covered != inkless):
            problems.append(f"noop covered {len(inked)} value boxes with ink, {s.covered} in all ({inkless} have no ink)")
        if s.redactor == "oracle":
            if s.covered != s.values or s.failed:
                problems.append(f"oracle covered {s.covered}/{s.values} value boxes, {s.failed} failed (recall must be 1)")
            if s.non_text_max not in (None, 0.0):
                problems.append(f"oracle altered non-text pixels (max {s.non_text_max}; must be 0)")
    return problems


# ---------------------------------------------------------------- miss pictures


def save_miss(path: Path, sample: Sample, out: np.ndarray, result: FileResult) -> None:
    """Source | output side by side, same 8-bit scaling (the source's range), value boxes drawn
    green (covered) or red (missed)."""
    import cv2

    src = sample.src.astype(np.float64)
    lo, hi = float(src.min()), float(src.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    halves = []
    for arr in (src, out.astype(np.float64)):
        v = np.clip(np.rint((arr - lo) * scale), 0, 255).astype(np.uint8)
        halves.append(v[:, :, ::-1] if v.ndim == 3 else cv2.cvtColor(v, cv2.COLOR_GRAY2BGR))
    f = max(1, 768 // max(src.shape[:2]))
    halves = [cv2.resize(v, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) for v in halves]
    for v in halves:
        for b in result.values:
            colour = (0, 200, 0) if b.covered else (0, 0, 255)
            x0, y0, x1, y1 = b.bbox
            cv2.rectangle(v, (x0 * f - 1, y0 * f - 1), ((x1 + 1) * f, (y1 + 1) * f), colour, 1)
    gap = np.full((halves[0].shape[0], 8, 3), (255, 0, 255), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.hstack([halves[0], gap, halves[1]]))


# ---------------------------------------------------------------- the run


def run_subset(
    subset: str, files: list[Path], redactors: dict[str, Redactor], misses: Path | None
) -> tuple[dict[str, list[FileResult]], list[Sample]]:
    """Every redactor on every file, file by file; the results per redactor and the files'
    ground truth (pixels and bytes dropped)."""
    results: dict[str, list[FileResult]] = {name: [] for name in redactors}
    truth: list[Sample] = []
    start = time.perf_counter()
    for i, path in enumerate(files, 1):
        sample = load(path)
        for name, redactor in redactors.items():
            result, out = run_one(redactor, sample)
            results[name].append(result)
            if misses is not None and out is not None and not result.clean and name != "noop":  # no-op misses everything
                save_miss(misses / subset / name / f"{path.stem}.png", sample, out, result)
        sample.data, sample.src = b"", np.zeros((0,), dtype=np.uint8)
        truth.append(sample)
        if i % 10 == 0 or i == len(files):
            print(f"  [{subset}] {i}/{len(files)} files, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return results, truth


def build_redactors(names: list[str], extra: dict[str, Any]) -> tuple[dict[str, Redactor], dict[str, str]]:
    """The redactors that could be built, and why the others could not (an import that fails
    mid-refactor skips its row rather than the whole run)."""
    built: dict[str, Redactor] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            built[name] = make_redactor(name, extra)
        except (ImportError, FileNotFoundError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
    return built, skipped


def warm_up(redactors: dict[str, Redactor], path: Path) -> None:
    sample = load(path)
    for redactor in redactors.values():
        try:
            redactor(sample)
        except Exception as exc:
            print(f"warm-up: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    names = [n.strip() for n in args.redactors.split(",") if n.strip()]
    redactors, skipped = build_redactors(names, json.loads(args.phiscrub_pixels) if args.phiscrub_pixels else {})
    subsets = ["tune", "report"] if args.subset == "both" else [args.subset]
    plan = {s: list_files(args.data, s, args.stride, args.limit) for s in subsets}
    if not any(plan.values()):
        print(f"no files under {args.data}", file=sys.stderr)
        return 1
    warm_up(redactors, next(files[0] for files in plan.values() if files))
    report: dict[str, Any] = {"settings": _settings(args, names), "subsets": {}}
    problems: list[str] = []
    for subset, files in plan.items():
        results, samples = run_subset(subset, files, redactors, args.save_misses)
        summaries = [summarise(name, rs) for name, rs in results.items()]
        print(table(TITLES[subset], samples, summaries, skipped), "\n", flush=True)
        inkless = sum(s.inkless_values for s in samples)
        problems += [f"{TITLES[subset]}: {p}" for p in baseline_problems(summaries, results, inkless)]
        report["subsets"][subset] = {
            "title": TITLES[subset],
            "summary": {s.redactor: {**asdict(s), "recall": s.recall} for s in summaries},
            "files": {name: [asdict(r) for r in rs] for name, rs in results.items()},
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    for p in problems:
        print(f"METRIC CHECK FAILED: {p}", file=sys.stderr)
    return 2 if problems else 0


def _settings(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    return {"subset": args.subset, "stride": args.stride, "limit": args.limit, "redactors": names,
            "phiscrub_pixels": args.phiscrub_pixels, "data": str(args.data),
            "metric": {"ring": RING, "ink": INK, "kept": KEPT, "covered": COVERED, "grow": GROW, "altered": ALTERED}}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subset", choices=("tune", "report", "both"), default="both")
    p.add_argument("--limit", type=int, default=None, help="first N files per subset (after --stride), sorted by name")
    p.add_argument("--stride", type=int, default=1, help="every K-th file of each subset, sorted by name")
    p.add_argument("--redactors", default=",".join(REDACTORS), help=f"comma-separated rows (default {','.join(REDACTORS)})")
    p.add_argument("--phiscrub-pixels", default=None, metavar="JSON", help="extra keys merged into phiscrub's 'pixels' mapping")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every per-file result here")
    p.add_argument("--save-misses", type=Path, default=None, metavar="DIR",
                   help="per file with a miss: DIR/<subset>/<redactor>/<file>.png, source | output, values green (covered), red (missed)")
    p.add_argument("--data", type=Path, default=DATA, help=f"the JSL dicom_files folder (default {DATA.relative_to(ROOT)})")
    p.add_argument("--self-test", action="store_true", help="check the metric code on synthetic arrays and exit")
    return p.parse_args(argv)


# ---------------------------------------------------------------- self-test


def _synthetic(seed: int = 0, colour: bool = False, dark_text: bool = False) -> tuple[np.ndarray, Box]:
    """A noisy 12-bit background with a box of thin text-like strokes."""
    rng = np.random.default_rng(seed)
    img = rng.normal(1000, 30, (96, 160)).clip(0, 4095)
    box = Box("Name", "synthetic", 40, 30, 119, 45)
    ink = 200.0 if dark_text else 3000.0
    for x in range(box.x0 + 2, box.x1 - 1, 7):  # vertical strokes 1 px wide, 6 px apart
        img[box.y0 + 2:box.y1 - 1, x] = ink
    for y in (box.y0 + 3, box.y1 - 3):  # two horizontal strokes
        img[y, box.x0 + 2:box.x0 + 20] = ink
    img = img.astype(np.uint16)
    if colour:
        img = np.stack([img, img // 2, img // 3], axis=2)
    return img, box


def _fill_ring(img: np.ndarray, box: Box, x1: int | None = None) -> np.ndarray:
    out = img.copy()
    out[box.y0:box.y1 + 1, box.x0:(box.x1 if x1 is None else x1) + 1] = np.round(ring_level(img, box)).astype(img.dtype)
    return out


def self_test() -> int:
    import cv2

    img, box = _synthetic()

    def covered(out: np.ndarray) -> bool:
        return ink_lost(img, out, box)[1] >= COVERED

    blurred = cv2.blur(img.astype(np.float32), (25, 25)).astype(img.dtype)
    outside = img.copy()
    outside[:10, :20] = 4000
    rgb, rbox = _synthetic(1, colour=True)
    dark, dbox = _synthetic(2, dark_text=True)
    flat = np.full((40, 40), 500, dtype=np.uint16)
    checks = {
        "untouched: not covered": not covered(img.copy()),
        "filled with ring median: covered": covered(_fill_ring(img, box)),
        "box and ring filled with any colour (image max): covered": covered(_fill_value(img, box, RING, img.max())),
        "box alone filled unlike its ring (image max): not covered, the box stands out": not covered(_fill_value(img, box, 0, img.max())),
        "blurred strongly: covered": covered(blurred),
        "half filled: not covered": not covered(_fill_ring(img, box, (box.x0 + box.x1) // 2)),
        "RGB untouched: not covered": ink_lost(rgb, rgb.copy(), rbox)[1] < COVERED,
        "RGB filled with ring median: covered": ink_lost(rgb, _fill_ring(rgb, rbox), rbox)[1] >= COVERED,
        "dark text on bright: filled covered": ink_lost(dark, _fill_ring(dark, dbox), dbox)[1] >= COVERED,
        "empty box: covered": ink_lost(flat, flat.copy(), Box("x", "", 10, 10, 20, 20)) == (0, 1.0),
        "non-text altered 0 for identical": non_text_altered(img, img.copy(), [box]) == 0.0,
        "non-text altered > 0 outside change": non_text_altered(img, outside, [box]) > 0.0,
        "non-text altered 0 for a change inside a box": non_text_altered(img, _fill_ring(img, box), [box]) == 0.0,
        "oracle: covered, nothing else altered": _oracle_ok(img, box),
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    failed = [n for n, ok in checks.items() if not ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} self-test checks passed")
    return 1 if failed else 0


def _fill_value(img: np.ndarray, box: Box, pad: int, value: Any) -> np.ndarray:
    out = img.copy()
    out[max(0, box.y0 - pad):box.y1 + 1 + pad, max(0, box.x0 - pad):box.x1 + 1 + pad] = value
    return out


def _oracle_ok(img: np.ndarray, box: Box) -> bool:
    second = Box("DOB", "x", box.x0, box.y1 + 5, box.x0 + 30, box.y1 + 15)  # a neighbour 4 px below
    sample = Sample("synthetic", "0", b"", img, "MONOCHROME2", [box, second], [])
    out = oracle(sample)
    return ink_lost(img, out, box)[1] >= COVERED and non_text_altered(img, out, [box, second]) == 0.0


if __name__ == "__main__":
    sys.exit(main())

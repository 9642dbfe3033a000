"""Burned-in text redaction, scored: phiscrub side by side with Presidio on one labelled set.

Why this exists: "the pixels are clean" is a claim about every character of every PHI field,
on every frame, in every transfer syntax, and it has a price (legible non-PHI text such as
"L"/"R" or "5.0 MHz" removed, image pixels damaged, seconds per image). Only exact ground
truth measures all of it, so this script runs each redactor on bench/pixel_set.py's set
(text burned at known boxes) and compares the decoded output (pydicom pixel_array) with the
decoded input, pixel by pixel, against labels.json.

Metrics (per redactor and mode):
- PHI recall: a PHI field counts as removed only when, on every frame it is on, every
  character's box is covered: >= 95% of its pixels changed or filled. A pixel is filled when
  it equals the value the redactor wrote most in the field's box (a black box over a black
  background leaves the background pixels unchanged, yet covered). The gaps between words
  are not required: they hold no text.
- clean-image rate: files with no PHI field left uncovered (a file the tool failed on is not
  clean).
- non-PHI kept: non-PHI fields with < 5% of their box pixels changed.
- non-text altered: pixels outside every label box (and outside text the source image
  already had) that changed, as a fraction, averaged over files.
- speed: single-frame 512x512 images per second, and seconds for the 30-frame clip. "img/s" is
  one process, one file after another (latency); "img/s 2w" is throughput on the machine's 2
  cores the way a run uses them: the same files through a pool of 2 worker processes, each
  with one OCR thread (what `phiscrub deidentify -j 2` does). The images/s target is judged
  on the pool figure; Presidio gets the same pool.
"Changed" means any sample differs from the decoded input; for inputs stored lossy (JPEG
baseline) by more than LOSSY_TOLERANCE, so that a lossy re-encode is not counted as damage.

Baselines validate the metric code on every run: "oracle" fills exactly the labelled PHI boxes
(must score recall 1, clean 1, non-PHI kept 1, non-text altered 0) and "no-op" returns its
input (recall 0). "oracle +1px" grows the oracle's boxes by one pixel: no redactor that covers
every PHI field with a box and any margin at all alters less outside the text, so it is the
scale for the "non-text altered" column (a tool under it has left fields uncovered).

Presidio (presidio-image-redactor, Tesseract OCR, OMP_THREAD_LIMIT=1, its fastest setting here): its analyzer needs a spaCy English model,
normally downloaded at run time; here it runs with a blank spaCy "en" pipeline (no download),
so its spaCy NER finds nothing and detection rests on the DICOM header deny-list that
DicomImageRedactorEngine builds (use_metadata=True) plus Presidio's regex recognizers (dates,
phone numbers, e-mail...). Where it cannot take a file as is, the adapter helps it and says
so: a multi-frame file is split into frames, a palette-colour one converted to RGB, and the
photometric interpretation it mislabels after redacting a YBR image is put back to RGB.

phiscrub runs through `PhiscrubRedactor`, a thin adapter over transform_dicom with
{"options": ["clean_pixel_data"], "pixels": {"text_redaction": mode}}; when the pixel stage
is not there yet it says so and the rest still runs.

    python bench/bench_pixels.py [--out DIR] [--modes all,sensitive] [--skip-presidio]
                                 [--skip-phiscrub] [--rebuild] [--keep-outputs] [--phiscrub-pixels JSON]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import io
import json
import logging
import os
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parent))
pixel_set = importlib.import_module("pixel_set")

BENCH_KEY = b"bench-key-0123456789abcdef"
COVER = 0.95  # share of a box (and of each character's box) that must be covered
KEPT = 0.05  # a non-PHI field is kept when less than this share of its box changed
FILL_SHARE = 0.1  # a value written over this share of a field's changed pixels is a fill
LOSSY_TOLERANCE = 8  # grey levels (of 255) a lossy input may drift by without counting as changed
TARGET_CLEAN = {"all": 0.99, "sensitive": 0.98}
TARGET_NON_PHI_KEPT = 0.9  # sensitive mode
TARGET_IMAGES_PER_S = 3.0
TARGET_CLIP_S = 2.0


# ---------------------------------------------------------------- redactors


@dataclass
class Redacted:
    data: bytes | None  # None: the tool produced nothing (error, quarantine)
    seconds: float
    error: str = ""
    notes: list[str] = field(default_factory=list)
    model_seconds: float = 0.0  # of ``seconds``, spent inside the OCR models (phiscrub only)


class Redactor:
    """One tool in one mode. prepare() returns why it cannot run, or None."""

    name = "?"
    mode = "-"

    def prepare(self, sample: bytes) -> str | None:
        return None

    def redact(self, data: bytes, entry: dict[str, Any]) -> Redacted:
        raise NotImplementedError

    def fresh(self) -> Redactor:
        """An unprepared copy, cheap to send to a worker process."""
        return type(self)()

    def forget(self) -> None:
        """Drop whatever the tool remembers between files (after an untimed warm-up on a
        file that is timed again later)."""

    @property
    def label(self) -> str:
        return f"{self.name} ({self.mode})" if self.mode != "-" else self.name


class NoOp(Redactor):
    name = "no-op"

    def redact(self, data: bytes, entry: dict[str, Any]) -> Redacted:
        t0 = time.perf_counter()
        return Redacted(bytes(data), time.perf_counter() - t0)


class Oracle(Redactor):
    """Fills exactly the labelled PHI boxes with the darkest value, writes uncompressed."""

    name = "oracle"
    pad = 0

    def redact(self, data: bytes, entry: dict[str, Any]) -> Redacted:
        t0 = time.perf_counter()
        ds = pydicom.dcmread(io.BytesIO(data))
        arr = _frames(_native(ds).pixel_array, ds).copy()
        fill = arr.min()
        p = self.pad
        for f in entry["fields"]:
            if f["kind"] == "phi":
                x0, y0, x1, y1 = f["box"]
                arr[f["frames"][0]: f["frames"][1], max(0, y0 - p):y1 + p, max(0, x0 - p):x1 + p] = fill
        _set_native(ds, arr)
        return Redacted(_save(ds), time.perf_counter() - t0)


class PaddedOracle(Oracle):
    """The oracle's boxes grown by one pixel on every side: the least any box-drawing
    redactor that covers every PHI field with a margin alters outside the text. It puts
    the "non-text altered" column in scale: a tool that scores under it leaves fields
    uncovered."""

    name = "oracle +1px"
    pad = 1


class PresidioRedactor(Redactor):
    """DicomImageRedactorEngine.redact_and_return_bbox(ds, fill="contrast", use_metadata=True)."""

    name = "presidio"
    mode = "blank-spacy"

    def prepare(self, sample: bytes) -> str | None:
        try:
            import pytesseract
            import spacy
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import SpacyNlpEngine
            from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine
        except ImportError as e:
            return f"not installed ({e.name}); pip install presidio-image-redactor, apt-get install tesseract-ocr"
        try:
            self.tesseract = str(pytesseract.get_tesseract_version())
        except Exception as e:  # any failure means no Tesseract binary
            return f"Tesseract not usable ({type(e).__name__}); apt-get install tesseract-ocr"

        class BlankSpacyNlpEngine(SpacyNlpEngine):
            """spaCy with no trained model: tokenizer only, so no download and no NER."""

            def load(self) -> None:
                self.nlp = {"en": spacy.blank("en")}

        nlp = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
        nlp.load()
        analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
        self.engine = DicomImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=analyzer))
        self.redact(sample, {})  # warm-up, untimed
        return None

    def redact(self, data: bytes, entry: dict[str, Any]) -> Redacted:
        t0 = time.perf_counter()
        notes: list[str] = []
        ds = pydicom.dcmread(io.BytesIO(data))
        try:
            out = self._redact_ds(ds, notes)
        except Exception as e:  # a tool failing on a file is a result
            return Redacted(None, time.perf_counter() - t0, type(e).__name__, notes)
        return Redacted(_save(out), time.perf_counter() - t0, "", notes)

    def _redact_ds(self, ds: Dataset, notes: list[str]) -> Dataset:
        photometric = str(ds.PhotometricInterpretation)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if photometric == "PALETTE COLOR":  # Presidio treats it as RGB and fails
            notes.append("palette->RGB")
            ds = _to_rgb(ds)
        if frames > 1:  # Presidio's DICOM engine handles one frame only
            notes.append("split frames")
            return self._per_frame(ds, frames)
        out, _boxes = self.engine.redact_and_return_bbox(ds, fill="contrast", use_metadata=True)
        if "YBR" in str(out.PhotometricInterpretation) and "YBR" in photometric:
            # it writes the RGB pixel_array back and labels it YBR_FULL; judge the boxes, not that bug
            notes.append("photometric YBR->RGB")
            out.PhotometricInterpretation = "RGB"
        return out

    def _per_frame(self, ds: Dataset, frames: int) -> Dataset:
        ds = _native(copy.deepcopy(ds))
        arr = _frames(ds.pixel_array, ds)
        done = []
        for i in range(frames):
            one = copy.deepcopy(ds)
            del one.PixelData
            for kw in ("NumberOfFrames", "FrameIncrementPointer", "FrameTime"):
                if kw in one:
                    delattr(one, kw)
            _set_native(one, arr[i: i + 1])
            out, _ = self.engine.redact_and_return_bbox(one, fill="contrast", use_metadata=True)
            done.append(_frames(out.pixel_array, out)[0])
        _set_native(ds, np.stack(done))
        return ds


class PhiscrubRedactor(Redactor):
    """The thin adapter the lead adjusts once the pixel stage lands."""

    name = "phiscrub"

    def __init__(self, mode: str, extra_pixels: dict[str, Any] | None = None) -> None:
        self.mode = mode
        self.extra = dict(extra_pixels or {})

    def fresh(self) -> Redactor:
        return PhiscrubRedactor(self.mode, self.extra)

    def prepare(self, sample: bytes) -> str | None:
        try:
            from phiscrub.errors import ConfigError
            from phiscrub.keys import KeyRing
            from phiscrub.policy.config import from_mapping
            from phiscrub.transform import transform_dicom
        except ImportError as e:
            return f"phiscrub pixel stage not available yet (cannot import {e.name})"
        try:
            cfg = from_mapping({"options": ["clean_pixel_data"], "pixels": {"text_redaction": self.mode, **self.extra}})
        except ConfigError as e:
            return f"phiscrub pixel stage not available yet (config: {e})"
        self.transform = transform_dicom
        self.cfg, self.keys, self.digest = cfg, KeyRing(BENCH_KEY), cfg.policy.digest()
        _time_models()
        try:  # warm-up, untimed (loads the OCR models)
            out = transform_dicom(sample, cfg, self.keys, self.digest)
            self.forget()  # the sample is timed again: its lines must not be remembered
        except ImportError as e:
            return f"phiscrub pixel stage not available yet (missing module {e.name})"
        except Exception:  # a per-file failure shows up again, per file, below
            return None
        if "pixels" not in out.manifest:
            return "phiscrub pixel stage not available yet (transform wrote no 'pixels' manifest)"
        return None

    def forget(self) -> None:
        from phiscrub.pixels.engines import get_engine

        engine = get_engine(self.cfg.pixels.engine)
        if hasattr(engine, "forget"):
            engine.forget()

    def redact(self, data: bytes, entry: dict[str, Any]) -> Redacted:
        t0, m0 = time.perf_counter(), _MODEL_SECONDS[0]
        try:
            out = self.transform(data, self.cfg, self.keys, self.digest)
        except Exception as e:  # quarantine or crash: no output released
            return Redacted(None, time.perf_counter() - t0, type(e).__name__)
        seconds = time.perf_counter() - t0
        pixels = out.manifest.get("pixels") or {}
        notes = [] if pixels.get("performed", True) else ["pixels not cleaned"]
        return Redacted(out.data, seconds, "", notes, _MODEL_SECONDS[0] - m0)


_MODEL_SECONDS = [0.0]


def _time_models() -> None:
    """Count the seconds spent inside onnxruntime (phiscrub's text detector and recogniser),
    so the report can say how fast the models alone would let a run go. Wraps
    InferenceSession.run once per process; a measurement aid, never used by phiscrub."""
    import onnxruntime

    run = onnxruntime.InferenceSession.run
    if getattr(run, "_bench_timed", False):
        return

    def timed(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return run(self, *args, **kwargs)
        finally:
            _MODEL_SECONDS[0] += time.perf_counter() - t0

    timed._bench_timed = True  # type: ignore[attr-defined]
    onnxruntime.InferenceSession.run = timed  # type: ignore[method-assign]


# ---------------------------------------------------------------- pixels


def _frames(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """(frames, rows, cols, samples) whatever pixel_array returned."""
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    return arr


def _native(ds: Dataset) -> Dataset:
    """Decompressed in place (YBR becomes RGB); uncompressed data is left as it is."""
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    return ds


def _set_native(ds: Dataset, arr: np.ndarray) -> None:
    """Store (frames, rows, cols, samples) uncompressed, little endian, as RGB or grey."""
    frames, _, _, samples = arr.shape
    data = arr[0] if frames == 1 else arr
    if samples == 1:
        data = data[..., 0]
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
    ds["PixelData"].is_undefined_length = False
    if samples == 3:
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian


def _to_rgb(ds: Dataset) -> Dataset:
    from pydicom.pixels import apply_color_lut

    ds = copy.deepcopy(ds)
    rgb = apply_color_lut(ds.pixel_array, ds)
    if rgb.dtype != np.uint8:
        rgb = np.rint(rgb / 257.0).astype(np.uint8)
    for kw in pixel_set.PALETTE_KEYWORDS:
        if kw in ds:
            delattr(ds, kw)
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 3, 8, 8, 7
    _set_native(ds, _frames(rgb, ds))
    return ds


def _save(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _decode(data: bytes) -> tuple[np.ndarray, Dataset]:
    ds = pydicom.dcmread(io.BytesIO(data))
    return _frames(ds.pixel_array, ds), ds


def _palette_rgb(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut

    rgb = apply_color_lut(arr[..., 0], ds)
    return np.rint(rgb / 257.0).astype(np.int32) if rgb.max() > 255 else rgb.astype(np.int32)


# ---------------------------------------------------------------- scoring


@dataclass
class FileScore:
    name: str
    frames: int
    seconds: float
    error: str = ""
    notes: list[str] = field(default_factory=list)
    phi: list[bool] = field(default_factory=list)  # covered, per PHI field (label order)
    non_phi: list[bool] = field(default_factory=list)  # kept, per non-PHI field
    nontext_altered: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.error and all(self.phi)


def _box_covered(changed: np.ndarray, out: np.ndarray, box: list[int], chars: list[list[int]], tol: int) -> bool:
    """Every character's box >= COVER covered. A pixel is covered when it changed, or
    when it holds a fill: a value the redactor wrote over at least FILL_SHARE of the
    changed pixels in the field's box (a pixel filled with a value close to its own, a
    label patch filled with its own colour, does not count as changed). Two boxes over
    one field can fill it with two values (background fills, one per box). The gaps
    between words are not required."""
    x0, y0, x1, y1 = box
    ch = changed[y0:y1, x0:x1]
    if not ch.any():
        return False
    region = out[y0:y1, x0:x1]
    values, counts = np.unique(region[ch], axis=0, return_counts=True)
    covered = ch.copy()
    for fill in values[counts >= min(counts.max(), FILL_SHARE * counts.sum())]:
        covered |= np.abs(region - fill).max(axis=-1) <= tol
    return all(covered[cy0 - y0: cy1 - y0, cx0 - x0: cx1 - x0].mean() >= COVER for cx0, cy0, cx1, cy1 in chars)


def score_file(name: str, entry: dict[str, Any], inp: np.ndarray, in_ds: Dataset, red: Redacted) -> FileScore:
    fields = entry["fields"]
    n_phi = sum(1 for f in fields if f["kind"] == "phi")
    res = FileScore(name, entry["frames"], red.seconds, red.error, list(red.notes))
    if red.data is None:
        res.phi = [False] * n_phi
        return res
    try:
        out, out_ds = _decode(red.data)
    except Exception as e:  # an undecodable output is a failure of the tool
        res.error, res.phi = f"output undecodable ({type(e).__name__})", [False] * n_phi
        return res
    a = inp.astype(np.int32)
    b = out.astype(np.int32)
    if a.shape != b.shape and str(in_ds.PhotometricInterpretation) == "PALETTE COLOR" and b.shape[-1] == 3:
        a = _palette_rgb(inp, in_ds)  # the tool turned palette colour into RGB: compare colours
    if a.shape != b.shape:
        res.error, res.phi = f"output shape {tuple(b.shape)} != input {tuple(a.shape)}", [False] * n_phi
        return res
    tol = LOSSY_TOLERANCE if entry["lossy"] else 0
    changed = np.abs(b - a).max(axis=-1) > tol  # (frames, rows, cols)
    labelled = np.zeros(changed.shape, dtype=bool)
    for x0, y0, x1, y1 in entry.get("preexisting_text", []):
        labelled[:, y0:y1, x0:x1] = True
    for f in fields:
        first, stop = f["frames"]
        x0, y0, x1, y1 = f["box"]
        labelled[first:stop, y0:y1, x0:x1] = True
        if f["kind"] == "phi":
            res.phi.append(all(_box_covered(changed[i], b[i], f["box"], f["chars"], tol) for i in range(first, stop)))
        elif f["kind"] == "non-phi":
            res.non_phi.append(all(changed[i, y0:y1, x0:x1].mean() < KEPT for i in range(first, stop)))
    outside = ~labelled
    res.nontext_altered = float((changed & outside).sum() / max(1, outside.sum()))
    return res


@dataclass
class Summary:
    label: str
    files: int = 0
    phi_recall: float = 0.0
    clean_rate: float = 0.0
    non_phi_kept: float = 0.0
    nontext_altered: float = 0.0
    images_per_s: float = 0.0
    pool_images_per_s: float = float("nan")
    clip_s: float = float("nan")
    series_images_per_s: float = float("nan")
    # single-frame images/s the pool's workers could reach if the OCR models were all they
    # ran (each worker on one core): the ceiling the models set on "img/s 2w"
    pool_model_ceiling: float = float("nan")
    errors: int = 0
    notes: dict[str, int] = field(default_factory=dict)
    unavailable: str = ""


def summarise(label: str, scores: list[FileScore]) -> Summary:
    phi = [c for s in scores for c in s.phi]
    ok = [s for s in scores if not s.error]
    non_phi = [k for s in ok for k in s.non_phi]
    single = [s for s in scores if s.frames == 1]
    clips = [s for s in scores if s.frames > 1]
    notes: dict[str, int] = defaultdict(int)
    for s in scores:
        for n in s.notes:
            notes[n] += 1
        if s.error:
            notes[f"error: {s.error}"] += 1
    return Summary(
        label=label,
        files=len(scores),
        phi_recall=sum(phi) / max(1, len(phi)),
        clean_rate=sum(s.clean for s in scores) / max(1, len(scores)),
        non_phi_kept=sum(non_phi) / max(1, len(non_phi)),
        nontext_altered=float(np.mean([s.nontext_altered for s in ok])) if ok else float("nan"),
        images_per_s=len(single) / max(1e-9, sum(s.seconds for s in single)),
        clip_s=max(s.seconds for s in clips) if clips else float("nan"),
        errors=sum(1 for s in scores if s.error),
        notes=dict(notes),
    )


# ---------------------------------------------------------------- reporting


def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def print_table(summaries: list[Summary]) -> None:
    head = (f"{'redactor':<26} {'PHI recall':>10} {'clean':>6} {'non-PHI kept':>12} {'non-text altered':>16} "
            f"{'img/s':>7} {'img/s 2w':>8} {'clip s':>7} {'series/s':>8} {'errors':>6}")
    print(head)
    print("-" * len(head))
    for s in summaries:
        if s.unavailable:
            print(f"{s.label:<26} skipped: {s.unavailable}")
            continue
        print(
            f"{s.label:<26} {_fmt(s.phi_recall):>10} {_fmt(s.clean_rate):>6} {_fmt(s.non_phi_kept):>12} "
            f"{_fmt(s.nontext_altered, 5):>16} {_fmt(s.images_per_s, 2):>7} {_fmt(s.pool_images_per_s, 2):>8} "
            f"{_fmt(s.clip_s, 2):>7} {_fmt(s.series_images_per_s, 2):>8} {s.errors:>6}"
        )
    for s in summaries:
        if s.notes:
            print(f"  {s.label}: " + ", ".join(f"{k} x{v}" for k, v in sorted(s.notes.items())))
    for s in summaries:
        if s.pool_model_ceiling == s.pool_model_ceiling:
            print(f"  {s.label}: the OCR models alone allow at most {_fmt(s.pool_model_ceiling, 2)} img/s 2w "
                  f"(their time in the pool's workers, with every other step free)")


def _groups(labels: dict[str, Any]) -> dict[str, list[tuple[str, int]]]:
    """PHI field (file, index among the file's PHI fields) by syntax, contrast, size, place."""
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for name, e in labels["files"].items():
        syntax = e["syntax_name"].replace(" Image Compression", "").replace(" (Lossless Only)", " lossless")
        phis = [f for f in e["fields"] if f["kind"] == "phi"]
        for i, f in enumerate(phis):
            size = "12-16px" if f["size"] <= 16 else ("17-22px" if f["size"] <= 22 else "23-28px")
            place = "middle" if f["anchor"] in ("mid", "ml", "mr") else "edge/corner"
            photometric = "clip" if e["frames"] > 1 else e["photometric"]
            for key in (f"syntax  {syntax}", f"image   {photometric}", f"contrast {f['contrast']}", f"size    {size}",
                        f"place   {place}", f"field   {f['what']}"):
                out[key].append((name, i))
    return out


def print_breakdown(labels: dict[str, Any], runs: list[tuple[Summary, list[FileScore]]]) -> None:
    runs = [(s, sc) for s, sc in runs if not s.unavailable and s.label not in (Oracle.name, PaddedOracle.name, NoOp.name)]
    if not runs:
        return
    print("\nPHI recall by group (fields in group):")
    print(f"{'group':<44}" + "".join(f"{s.label:>24}" for s, _ in runs))
    for key, members in sorted(_groups(labels).items()):
        cells = []
        for _, scores in runs:
            by_name = {sc.name: sc for sc in scores}
            hit = sum(by_name[n].phi[i] for n, i in members if n in by_name and i < len(by_name[n].phi))
            cells.append(f"{hit / len(members):>24.3f}")
        print(f"{key + f' ({len(members)})':<44}" + "".join(cells))


def _ahead(ours: float, theirs: float, higher_is_better: bool, ideal: float) -> bool:
    if ours != ours:
        return False
    if theirs != theirs:
        return True
    if higher_is_better:
        return ours > theirs or (ours == theirs == ideal)
    return ours < theirs or (ours == theirs == ideal)


def print_targets(summaries: list[Summary]) -> None:
    print("\nTargets:")
    presidio = next((s for s in summaries if s.label.startswith("presidio") and not s.unavailable), None)
    mine = [s for s in summaries if s.label.startswith("phiscrub")]
    why = ""
    if not mine:
        print("  phiscrub: not run")
    for s in mine:
        mode = s.label.split("(")[-1].rstrip(")")
        if s.unavailable:
            print(f"  phiscrub ({mode}): not measured - {s.unavailable}")
            continue
        checks: list[tuple[str, bool]] = []
        if mode in TARGET_CLEAN:
            checks.append((f"clean-image rate {_fmt(s.clean_rate)} >= {TARGET_CLEAN[mode]}", s.clean_rate >= TARGET_CLEAN[mode]))
        if mode == "sensitive":
            checks.append((f"non-PHI kept {_fmt(s.non_phi_kept)} >= {TARGET_NON_PHI_KEPT}", s.non_phi_kept >= TARGET_NON_PHI_KEPT))
        speed = s.pool_images_per_s if s.pool_images_per_s == s.pool_images_per_s else s.images_per_s
        checks.append((f"{_fmt(speed, 2)} images/s on 2 cores >= {TARGET_IMAGES_PER_S}", speed >= TARGET_IMAGES_PER_S))
        checks.append((f"30-frame clip {_fmt(s.clip_s, 2)} s < {TARGET_CLIP_S}", s.clip_s < TARGET_CLIP_S))
        if presidio is None:
            checks.append(("ahead of Presidio: Presidio not run", False))
        else:
            metrics = [
                ("PHI recall", s.phi_recall, presidio.phi_recall, True, 1.0),
                ("clean", s.clean_rate, presidio.clean_rate, True, 1.0),
                ("non-text altered", s.nontext_altered, presidio.nontext_altered, False, 0.0),
                ("img/s", s.images_per_s, presidio.images_per_s, True, float("inf")),
                ("img/s 2w", s.pool_images_per_s, presidio.pool_images_per_s, True, float("inf")),
                ("clip s", s.clip_s, presidio.clip_s, False, 0.0),
            ]
            if mode == "sensitive":  # "all" removes non-PHI text by design
                metrics.insert(2, ("non-PHI kept", s.non_phi_kept, presidio.non_phi_kept, True, 1.0))
            behind = [m[0] for m in metrics if not _ahead(m[1], m[2], m[3], m[4])]
            checks.append(("ahead of Presidio on every metric" + (f" (not on: {', '.join(behind)})" if behind else ""), not behind))
            padded = next((o for o in summaries if o.label == PaddedOracle.name), None)
            if "non-text altered" in behind and padded is not None and presidio.nontext_altered < padded.nontext_altered:
                why = (f"Presidio's non-text altered {_fmt(presidio.nontext_altered, 4)} is under the "
                       f"{_fmt(padded.nontext_altered, 4)} of exact PHI boxes grown by 1 px: it comes from fields left "
                       f"uncovered (recall {_fmt(presidio.phi_recall)}); no redactor that covers them all can match it")
        for text, ok in checks:
            print(f"  phiscrub ({mode}): {'MET   ' if ok else 'NOT MET'} {text}")
    if why:
        print(f"  note: {why}")


def check_baselines(summaries: list[Summary]) -> None:
    by = {s.label: s for s in summaries}
    oracle, noop = by.get(Oracle.name), by.get(NoOp.name)
    ok_oracle = bool(oracle) and oracle.phi_recall == 1.0 and oracle.clean_rate == 1.0 and oracle.non_phi_kept == 1.0 \
        and oracle.nontext_altered < 1e-6
    ok_noop = bool(noop) and noop.phi_recall == 0.0 and noop.clean_rate == 0.0 and noop.non_phi_kept == 1.0 \
        and noop.nontext_altered == 0.0
    print(f"\nMetric self-check: oracle {'ok' if ok_oracle else 'FAILED'}, no-op {'ok' if ok_noop else 'FAILED'}")


# ---------------------------------------------------------------- main


_POOL: dict[str, Any] = {}


def _pool_init(red: Redactor, sample: bytes) -> None:
    os.environ["PHISCRUB_OCR_THREADS"] = "1"  # one OCR thread per worker: the pool shares the cores
    os.environ["OMP_THREAD_LIMIT"] = "1"  # Tesseract's OpenMP likewise
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    red.prepare(sample)  # loads models, untimed
    _POOL["red"] = red


def _pool_warm(item: tuple[bytes, dict[str, Any]]) -> str:
    """A warm-up file, then forget it: it is timed again."""
    try:
        return _pool_redact(item)[0]
    finally:
        _POOL["red"].forget()


def _pool_redact(item: tuple[bytes, dict[str, Any]]) -> tuple[str, float]:
    """('' when the redactor wrote an output, else why not (a failure is not throughput),
    the seconds its OCR models took)."""
    out = _POOL["red"].redact(*item)
    return ("" if out.data is not None else (out.error or "no output")), out.model_seconds


def pool_throughput(red: Redactor, items: list[tuple[bytes, dict[str, Any]]], workers: int = 2) -> tuple[float, float]:
    """Single-frame images per second through a pool of ``workers`` fresh processes (spawned,
    not forked: a forked OCR runtime would keep the parent's thread settings), each loading
    its models before the clock starts; and the rate the OCR models alone would allow (nan
    for a tool whose models are not timed)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                             initargs=(red.fresh(), items[0][0])) as pool:
        list(pool.map(_pool_warm, items[: 2 * workers]))  # every worker started and warm
        t0 = time.perf_counter()
        done = list(pool.map(_pool_redact, items))
        rate = len(items) / (time.perf_counter() - t0)
    errors = [e for e, _ in done if e]
    model = sum(m for _, m in done)
    ceiling = workers * len(items) / model if model > 0 else float("nan")
    if errors:  # the serial run wrote these files: a pool that did not is not comparable
        print(f"  {red.label}: {len(errors)} of {len(items)} failed in the pool ({errors[0]}); pool figure dropped")
        return float("nan"), float("nan")
    return rate, ceiling


def split_clip(data: bytes) -> list[bytes]:
    """The clip's frames as single-frame instances of one series (each frame's own JPEG
    fragments, not re-encoded): what an ultrasound stores when it saves images, not a
    loop. Their labels sit at the same places on the same border in every image."""
    from pydicom.encaps import encapsulate, generate_fragmented_frames
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(io.BytesIO(data))
    n = int(ds.NumberOfFrames)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        frames = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData, number_of_frames=n)]
    else:
        size = len(ds.PixelData) // n
        frames = [ds.PixelData[k * size:(k + 1) * size] for k in range(n)]
    out = []
    for k, frame in enumerate(frames):
        one = pydicom.dcmread(io.BytesIO(data))
        one.NumberOfFrames = 1
        one.PixelData = encapsulate([frame]) if ds.file_meta.TransferSyntaxUID.is_encapsulated else frame
        one.SOPInstanceUID = one.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(k), str(ds.SOPInstanceUID)])
        one.SOPClassUID = one.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # US Image Storage
        for kw in ("FrameTime", "CineRate", "FrameIncrementPointer"):
            if kw in one:
                del one[kw]
        buf = io.BytesIO()
        one.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


def series_throughput(red: Redactor, series: list[bytes], entry: dict[str, Any]) -> float:
    """Images per second over a series of one device's images, one process, in order,
    starting from nothing remembered; a file that fails is not throughput."""
    red.forget()
    t0 = time.perf_counter()
    done = sum(red.redact(data, {**entry, "frames": 1}).data is not None for data in series)
    rate = len(series) / (time.perf_counter() - t0)
    red.forget()
    return rate if done == len(series) else float("nan")


def run_one(red: Redactor, labels: dict[str, Any], folder: Path, inputs: dict[str, tuple[np.ndarray, Dataset]],
            raw: dict[str, bytes], outdir: Path | None, pool: bool = True) -> tuple[Summary, list[FileScore]]:
    first_single = next(n for n, e in labels["files"].items() if e["frames"] == 1)
    why = red.prepare(raw[first_single])
    if why:
        return Summary(red.label, unavailable=why), []
    scores = []
    for name, entry in labels["files"].items():
        result = red.redact(raw[name], entry)
        if outdir is not None and result.data is not None:
            target = outdir / red.label.replace(" ", "_").replace("(", "").replace(")", "")
            target.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(result.data)
        inp, in_ds = inputs[name]
        scores.append(score_file(name, entry, inp, in_ds, result))
    summary = summarise(red.label, scores)
    clip = next((n for n, e in labels["files"].items() if e["frames"] > 1), None)
    if clip is not None and isinstance(red, (PresidioRedactor, PhiscrubRedactor)):
        summary.series_images_per_s = series_throughput(red, split_clip(raw[clip]), labels["files"][clip])
    if pool and isinstance(red, (PresidioRedactor, PhiscrubRedactor)):
        single = [(raw[n], e) for n, e in labels["files"].items() if e["frames"] == 1]
        summary.pool_images_per_s, summary.pool_model_ceiling = pool_throughput(red, single)
    return summary, scores


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Burned-in text redaction: phiscrub vs Presidio on a labelled set")
    ap.add_argument("--out", type=Path, default=pixel_set.DEFAULT_OUT, help="the set's folder (built there if absent)")
    ap.add_argument("--modes", default="all,sensitive", help="phiscrub pixels.text_redaction modes, comma-separated")
    ap.add_argument("--skip-presidio", action="store_true")
    ap.add_argument("--skip-phiscrub", action="store_true")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the set even if labels.json exists")
    ap.add_argument("--phiscrub-pixels", default="{}", help='extra keys for the "pixels" config, as JSON')
    ap.add_argument("--keep-outputs", action="store_true", help="write each tool's outputs under OUT/redacted/")
    ap.add_argument("--no-pool", action="store_true", help="skip the 2-worker throughput run")
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # Presidio and pydicom log per file
    # Tesseract's OpenMP threads spin against each other on a small machine: with one thread
    # Presidio ran 4.3x faster here (0.60 -> 2.59 images/s). Peers get their best setting.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")

    labels_path = args.out / "labels.json"
    if args.rebuild or not labels_path.is_file():
        labels = pixel_set.build(args.out)
    else:
        labels = json.loads(labels_path.read_text())
    print(f"set: {pixel_set.summary(labels)} in {args.out}")

    raw = {name: (args.out / name).read_bytes() for name in labels["files"]}
    inputs = {name: _decode(data) for name, data in raw.items()}
    outdir = args.out / "redacted" if args.keep_outputs else None

    redactors: list[Redactor] = [Oracle(), PaddedOracle(), NoOp()]
    if not args.skip_presidio:
        redactors.append(PresidioRedactor())
    if not args.skip_phiscrub:
        extra = json.loads(args.phiscrub_pixels)
        redactors += [PhiscrubRedactor(m.strip(), extra) for m in args.modes.split(",") if m.strip()]

    runs = []
    for red in redactors:
        t0 = time.perf_counter()
        summary, scores = run_one(red, labels, args.out, inputs, raw, outdir, pool=not args.no_pool)
        runs.append((summary, scores))
        state = f"skipped ({summary.unavailable})" if summary.unavailable else f"{time.perf_counter() - t0:.1f} s"
        print(f"ran {red.label}: {state}", flush=True)
        if isinstance(red, PresidioRedactor) and not summary.unavailable:
            print(f"  Presidio with Tesseract {red.tesseract}, spaCy blank 'en' pipeline (no NER model)")

    summaries = [s for s, _ in runs]
    print()
    print_table(summaries)
    print_breakdown(labels, runs)
    check_baselines(summaries)
    print_targets(summaries)
    results = {
        s.label: {
            "summary": {k: v for k, v in s.__dict__.items()},
            "files": {sc.name: {"phi_covered": sc.phi, "non_phi_kept": sc.non_phi, "nontext_altered": sc.nontext_altered,
                                "seconds": sc.seconds, "error": sc.error, "notes": sc.notes} for sc in scores},
        }
        for s, scores in runs
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

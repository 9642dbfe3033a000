"""Burned-in text on REAL images, read back by Tesseract: python bench/bench_real.py [--json PATH]

Why: bench_pixels.py and pixel_heldout.py score the pixel stage on text this project burned
itself, and bench_jsl.py on one labelled set; this scores it on the few public DICOM images
with burned-in text that we did not make and whose header says whose text it is, the way
tests/pixels/test_real_burned_in.py judges them: what Tesseract (an OCR independent of
phiscrub's RapidOCR) can still read. These images are for REPORTING only: no setting is
chosen by their score.

Images (each set skipped, and said so, when absent; the same file found in several places,
by sha256, is scored once and listed with every location):

- ``tests/data/real/presidio-2_ORIGINAL.dcm`` (committed; tests/data/real/SOURCES.md);
- ``../shared/real-data/presidio-0_ORIGINAL_compressed.dcm`` and ``presidio-RGB_ORIGINAL.dcm``;
- every DICOM file (``.dcm``/``.dicom``, any case) under ``bench/out/real/presidio/``: the files of
  microsoft/presidio ``presidio-image-redactor/tests/test_data`` (MIT; images from TCIA's
  Pseudo-PHI-DICOM-Data, CC BY 4.0), copied there from a snapshot (bench/README.md says how;
  git-ignored, never committed);
- the deid-data package's ``data/ultrasounds/``: ``GREYSCALE_IMAGE.dcm``, ``RGB_IMAGE.dcm`` and
  (unless ``--single-frame``) the multi-frame ``ultrasound-multiframe.dcm`` and the DICOM inside
  ``GREYSCALE_CINE.zip`` and ``RGB_CINE.zip``.

A file without pixel data is listed and skipped.

Rows (``--rows``): ``noop``; ``rapidocr``, the plain RapidOCR baseline (bench_jsl.PlainRapidOcr:
the wheel's det + rec models, rapidocr's defaults, every detected box filled; on a multi-frame
file every frame, each on its own min-max 8-bit view); ``phiscrub-default`` (transform_dicom with
``from_mapping({})``, the default configuration: clean_pixel_data with text_redaction 'auto');
``phiscrub-sensitive`` and ``phiscrub-all`` (bench_jsl.Phiscrub: clean_pixel_data and that mode);
``presidio`` (bench_pixels.PresidioRedactor: DicomImageRedactorEngine, fill 'contrast',
use_metadata=True, blank spaCy pipeline, multi-frame files split into frames), when
presidio-image-redactor is importable.

Score, per image and row, on the scored frames (the first; for a multi-frame file the first,
middle and last), each read by tests/pixels/tesseract.read_text (psm 11, 2x upscale up to 2560 px):

- PHI tokens: tests/pixels/tesseract.phi_tokens of the ORIGINAL header (PatientName parts,
  PatientID, OtherPatientIDs, AccessionNumber, PatientBirthDate in its written forms,
  InstitutionName words of >= 4 letters; >= 3 characters each). One date read whole can count in
  two forms (07.22.1943 and 07221943).
- readable: PHI tokens Tesseract reads in the input, plus cut-off forms of them it reads there
  (truncated_phi: a strict prefix of >= 5 characters, "PATIENTFI" for "PATIENTFIVE").
- left: readable tokens that Tesseract still reads in the output, whole or cut off (a strict
  prefix of >= 5 characters). recall = 1 - left / readable, summed over images.
- extra: PHI tokens (or cut-off forms) read in the output that were not read in the input and
  are not a form of a readable one (text a partial fill made legible, or OCR noise).
- clean: an image with at least one readable token, the row did not fail, and nothing left or
  extra.
- pixels changed: share of the scored frames' pixels whose decoded value differs from the
  input's (any channel). There is no ground truth for where the text is, so this includes the
  text removed; it bounds, from above, how much non-text the row altered.
- s/image: the row's call from the file's bytes to its output (one process, after an untimed
  warm-up on the smallest image), Tesseract not included.

A row that raises (phiscrub's quarantine) or whose output cannot be decoded to the input's shape
has failed on that image: everything readable counts as left and the image is not clean.
Token values are never printed or written; counts only.

    python bench/bench_real.py                          # every row, ~4 min on 2 cores
    python bench/bench_real.py --single-frame --rows noop,rapidocr,phiscrub-default --json /tmp/real.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import bench_jsl  # noqa: E402
from tests.pixels.tesseract import available, phi_tokens, read_text, tokens, truncated_phi  # noqa: E402

PRESIDIO_DIR = ROOT / "bench" / "out" / "real" / "presidio"
PRESIDIO_COMMIT = "0aa9f8e44275cb52c00fbbebe19168e934e1f076"
SHARED_DIR = ROOT.parent / "shared" / "real-data"
SHARED_FILES = ("presidio-0_ORIGINAL_compressed.dcm", "presidio-RGB_ORIGINAL.dcm")
REPO_FILES = ("tests/data/real/presidio-2_ORIGINAL.dcm",)
DEID_SINGLE = ("GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm")
DEID_MULTI = ("ultrasound-multiframe.dcm", "GREYSCALE_CINE.zip", "RGB_CINE.zip")
DICOM_SUFFIXES = (".dcm", ".dicom")
CUT_MIN = 5  # characters: a shorter prefix of a PHI token is not counted as a cut-off form of it

ROWS = ("noop", "rapidocr", "phiscrub-default", "phiscrub-sensitive", "phiscrub-all", "presidio")

# the group an image is reported in: where its pixels come from
GROUP_PRESIDIO = "Pseudo-PHI (Presidio tests)"
GROUP_DEID = "deid-data ultrasounds"


# ---------------------------------------------------------------- images


@dataclass
class Image:
    """One distinct file (by sha256) and every place it was found."""

    name: str  # the first location's file name
    sha256: str
    group: str
    locations: list[str]
    load: Callable[[], bytes] = field(repr=False)
    size: int = 0


def _deid_dir() -> Path | None:
    try:
        import deid_data
    except ImportError:
        return None
    return Path(os.path.dirname(deid_data.__file__)) / "data" / "ultrasounds"


def _file_loader(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _zip_loader(path: Path, member: str) -> Callable[[], bytes]:
    def load() -> bytes:
        with zipfile.ZipFile(path) as zf:
            return zf.read(member)

    return load


def candidates(single_frame: bool) -> tuple[list[tuple[str, str, Callable[[], bytes]]], list[str]]:
    """(group, location, loader) for every file found, in a fixed order, and a line per set
    that is absent."""
    found: list[tuple[str, str, Callable[[], bytes]]] = []
    absent: list[str] = []
    for rel in REPO_FILES:
        p = ROOT / rel
        if p.is_file():
            found.append((GROUP_PRESIDIO, rel, _file_loader(p)))
        else:
            absent.append(f"{rel}: not in this checkout")
    if SHARED_DIR.is_dir():
        for n in SHARED_FILES:
            p = SHARED_DIR / n
            if p.is_file():
                found.append((GROUP_PRESIDIO, f"../shared/real-data/{n}", _file_loader(p)))
            else:
                absent.append(f"../shared/real-data/{n}: absent")
    else:
        absent.append(f"shared real data ({SHARED_DIR}): folder absent")
    presidio = sorted(p for p in PRESIDIO_DIR.rglob("*") if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES) \
        if PRESIDIO_DIR.is_dir() else []
    if presidio:
        for p in presidio:
            found.append((GROUP_PRESIDIO, str(p.relative_to(ROOT)), _file_loader(p)))
    else:
        absent.append(f"Presidio's test_data ({PRESIDIO_DIR.relative_to(ROOT)}): no DICOM files; bench/README.md says how to copy them")
    deid = _deid_dir()
    if deid is None or not deid.is_dir():
        absent.append("deid-data ultrasounds: the deid-data package (a test extra) is not installed")
    else:
        for n in DEID_SINGLE + (() if single_frame else DEID_MULTI):
            p = deid / n
            if not p.is_file():
                absent.append(f"deid-data ultrasounds/{n}: absent")
            elif p.suffix == ".zip":
                with zipfile.ZipFile(p) as zf:
                    members = [m for m in zf.namelist() if m.lower().endswith(DICOM_SUFFIXES)]
                found += [(GROUP_DEID, f"deid_data/data/ultrasounds/{n}!{m}", _zip_loader(p, m)) for m in members]
            else:
                found.append((GROUP_DEID, f"deid_data/data/ultrasounds/{n}", _file_loader(p)))
    return found, absent


def distinct(found: list[tuple[str, str, Callable[[], bytes]]]) -> list[Image]:
    """One Image per sha256, in the order first found."""
    by_sha: dict[str, Image] = {}
    for group, location, load in found:
        data = load()
        sha = hashlib.sha256(data).hexdigest()
        if sha in by_sha:
            by_sha[sha].locations.append(location)
        else:
            name = location.rsplit("!", 1)[-1].rsplit("/", 1)[-1]
            by_sha[sha] = Image(name, sha, group, [location], load, len(data))
    return list(by_sha.values())


# ---------------------------------------------------------------- pixels


def all_frames(ds: Any) -> tuple[np.ndarray, str]:
    """Every decoded frame, (frames, rows, cols[, 3]), and the photometric interpretation the
    values are in (pydicom converts YBR to RGB)."""
    arr = np.asarray(ds.pixel_array)
    if int(ds.get("NumberOfFrames") or 1) == 1:
        arr = arr[None]
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.startswith("YBR") and arr.ndim == 4:
        photometric = "RGB"
    return arr, photometric


def decode(data: bytes) -> tuple[np.ndarray, str]:
    import pydicom

    return all_frames(pydicom.dcmread(BytesIO(data)))


def scored_frames(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1})


# ---------------------------------------------------------------- rows


@dataclass
class Input:
    name: str
    data: bytes
    frames: np.ndarray
    photometric: str

    def sample(self) -> Any:
        return bench_jsl.Sample(self.name, "", self.data, self.frames[0], self.photometric, [], [])


Row = Callable[[Input], "bytes | np.ndarray"]


def noop(inp: Input) -> np.ndarray:
    return inp.frames.copy()


class RapidOcrRow:
    """bench_jsl.PlainRapidOcr as it is on a single frame; on a multi-frame file the same
    (its rects on each frame's min-max 8-bit view, every rectangle filled) frame by frame."""

    def __init__(self) -> None:
        self.ocr = bench_jsl.PlainRapidOcr()

    def __call__(self, inp: Input) -> np.ndarray:
        if inp.frames.shape[0] == 1:
            return self.ocr(inp.sample())[None]
        frames, _ = decode(inp.data)
        out = frames.copy()
        for i, frame in enumerate(frames):
            fill = 0 if frame.ndim == 3 else frame.min()
            for x0, y0, x1, y1 in self.ocr.rects(bench_jsl.eight_bit(frame)):
                out[i, y0:y1 + 1, x0:x1 + 1] = fill
        return out


class PhiscrubRow:
    """bench_jsl.Phiscrub in a text mode, or with the default configuration (mode None)."""

    def __init__(self, mode: str | None) -> None:
        self.inner = bench_jsl.Phiscrub(mode or "auto", {})
        if mode is None:
            from phiscrub.policy.config import from_mapping

            self.inner.cfg = from_mapping({})
            self.inner.digest = self.inner.cfg.policy.digest()

    def __call__(self, inp: Input) -> bytes:
        return self.inner(inp.sample())


class PresidioRow:
    """bench_pixels.PresidioRedactor (its prepare() warms it up on ``warm``)."""

    def __init__(self, warm: bytes) -> None:
        import bench_pixels

        self.red = bench_pixels.PresidioRedactor()
        why = self.red.prepare(warm)
        if why:
            raise ImportError(why)
        self.notes: list[str] = []

    def __call__(self, inp: Input) -> bytes:
        r = self.red.redact(inp.data, {})
        self.notes = list(r.notes)
        if r.data is None:
            raise RuntimeError(f"Presidio failed: {r.error}")
        return r.data


def build_rows(names: list[str], warm: bytes) -> tuple[dict[str, Row], dict[str, str]]:
    rows: dict[str, Row] = {}
    skipped: dict[str, str] = {}
    for name in names:
        try:
            if name == "noop":
                rows[name] = noop
            elif name == "rapidocr":
                rows[name] = RapidOcrRow()
            elif name == "phiscrub-default":
                rows[name] = PhiscrubRow(None)
            elif name.startswith("phiscrub-"):
                rows[name] = PhiscrubRow(name.removeprefix("phiscrub-"))
            elif name == "presidio":
                rows[name] = PresidioRow(warm)
            else:
                raise SystemExit(f"unknown row {name!r}; known: {', '.join(ROWS)}")
        except (ImportError, FileNotFoundError) as exc:
            skipped[name] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: skipped ({skipped[name]})", file=sys.stderr)
    return rows, skipped


# ---------------------------------------------------------------- scoring


def _ocr_cache() -> Callable[[np.ndarray, str], set[str]]:
    """Tesseract's tokens of one frame, remembered by the frame's bytes (an output equal to its
    input is not read twice)."""
    seen: dict[str, set[str]] = {}

    def read(frame: np.ndarray, photometric: str) -> set[str]:
        key = hashlib.sha256(np.ascontiguousarray(frame).tobytes() + f"{frame.shape}{frame.dtype}{photometric}".encode()).hexdigest()
        if key not in seen:
            seen[key] = tokens(read_text(frame, photometric))
        return seen[key]

    return read


def _is_form(u: str, t: str) -> bool:
    """u is t, or t cut off (a strict prefix of at least CUT_MIN characters)."""
    return u == t or (len(u) >= CUT_MIN and t.startswith(u))


@dataclass
class RowResult:
    seconds: float
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    left: int = 0
    extra: int = 0
    clean: bool = False
    changed: float | None = None


@dataclass
class ImageResult:
    name: str
    sha256: str
    group: str
    locations: list[str]
    bytes: int
    frames: int = 0
    scored_frames: list[int] = field(default_factory=list)
    photometric: str = ""
    shape: list[int] = field(default_factory=list)
    skipped: str | None = None
    phi_tokens: int = 0  # in the original header
    readable: int = 0  # of them (or cut-off forms) read in the input
    rows: dict[str, RowResult] = field(default_factory=dict)


def score_row(
    row: Row, inp: Input, idx: list[int], phi: set[str], read_in: set[str], readable: set[str],
    ocr: Callable[[np.ndarray, str], set[str]],
) -> RowResult:
    t = time.perf_counter()
    try:
        produced = row(inp)
    except Exception as exc:  # quarantine, or a tool's own failure: a result
        return RowResult(round(time.perf_counter() - t, 3), f"{type(exc).__name__}: {exc}"[:300], left=len(readable))
    res = RowResult(round(time.perf_counter() - t, 3), notes=list(getattr(row, "notes", [])))
    try:
        if isinstance(produced, bytes):
            out, photometric = decode(produced)
        else:
            out, photometric = produced, inp.photometric
    except Exception as exc:
        res.error, res.left = f"output not decodable: {type(exc).__name__}: {exc}"[:300], len(readable)
        return res
    if out.shape != inp.frames.shape:
        res.error, res.left = f"output shape {out.shape} != input {inp.frames.shape}", len(readable)
        return res
    read_out: set[str] = set()
    changed = []
    for i in idx:
        read_out |= ocr(out[i], photometric)
        diff = out[i] != inp.frames[i]
        changed.append(float((diff.any(axis=-1) if diff.ndim == 3 else diff).mean()))
    res.changed = round(statistics.fmean(changed), 6)
    res.left = sum(any(_is_form(u, t) for u in read_out) for t in readable)
    phi_out = (phi & read_out) | truncated_phi(read_out, phi, CUT_MIN)
    res.extra = sum(u not in read_in and not any(_is_form(u, t) for t in readable) for u in phi_out)
    res.clean = bool(readable) and res.left == 0 and res.extra == 0
    return res


def score_image(img: Image, rows: dict[str, Row], ocr: Callable[[np.ndarray, str], set[str]]) -> ImageResult:
    import pydicom

    data = img.load()
    result = ImageResult(img.name, img.sha256, img.group, img.locations, len(data))
    ds = pydicom.dcmread(BytesIO(data))
    if "PixelData" not in ds:
        result.skipped = "no pixel data"
        return result
    frames, photometric = all_frames(ds)
    inp = Input(img.name, data, frames, photometric)
    idx = scored_frames(frames.shape[0])
    result.frames, result.scored_frames, result.photometric = frames.shape[0], idx, photometric
    result.shape = list(frames.shape[1:])
    phi = phi_tokens(ds)
    read_in: set[str] = set()
    for i in idx:
        read_in |= ocr(frames[i], photometric)
    readable = (phi & read_in) | truncated_phi(read_in, phi, CUT_MIN)
    result.phi_tokens, result.readable = len(phi), len(readable)
    for name, row in rows.items():
        result.rows[name] = score_row(row, inp, idx, phi, read_in, readable, ocr)
    return result


# ---------------------------------------------------------------- tables


@dataclass
class Summary:
    row: str
    images: int
    failed: int
    readable: int
    left: int
    extra: int
    clean: int
    with_text: int  # images with at least one readable token
    changed_mean: float | None
    changed_max: float | None
    seconds_mean: float

    @property
    def recall(self) -> float:
        return 1 - self.left / self.readable if self.readable else float("nan")


def summarise(row: str, results: list[ImageResult]) -> Summary:
    rs = [(r, r.rows[row]) for r in results if row in r.rows]
    changed = [x.changed for _, x in rs if x.changed is not None]
    return Summary(
        row, len(rs), sum(x.error is not None for _, x in rs), sum(r.readable for r, _ in rs), sum(x.left for _, x in rs),
        sum(x.extra for _, x in rs), sum(x.clean for _, x in rs), sum(r.readable > 0 for r, _ in rs),
        statistics.fmean(changed) if changed else None, max(changed) if changed else None,
        statistics.fmean(x.seconds for _, x in rs) if rs else 0.0,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def summary_table(title: str, summaries: list[Summary]) -> str:
    lines = [f"== {title} ==",
             f"{'row':<20}{'images':>7}{'failed':>7}{'readable':>9}{'left':>6}{'recall':>8}{'extra':>6}{'clean':>8}"
             f"{'changed mean':>14}{'max':>8}{'s/image':>9}"]
    for s in summaries:
        recall = "-" if s.readable == 0 else f"{s.recall:.3f}"
        lines.append(f"{s.row:<20}{s.images:>7}{s.failed:>7}{s.readable:>9}{s.left:>6}{recall:>8}{s.extra:>6}"
                     f"{f'{s.clean}/{s.with_text}':>8}{_pct(s.changed_mean):>14}{_pct(s.changed_max):>8}{s.seconds_mean:>9.2f}")
    return "\n".join(lines)


def image_table(results: list[ImageResult], rows: list[str]) -> str:
    """Per image: header PHI tokens, tokens readable in the input, and per row the tokens left
    (+ extra), 'F' for a failure."""
    head = f"{'image':<34}{'frames':>7}{'phi':>5}{'read':>6}" + "".join(f"{r:>20}" for r in rows)
    lines = ["== per image: PHI tokens in the header, readable in the input, left after each row (+extra; F = failed) ==", head]
    for r in results:
        if r.skipped:
            lines.append(f"{r.name:<34} skipped: {r.skipped}")
            continue
        cells = []
        for name in rows:
            x = r.rows.get(name)
            cell = "-" if x is None else ("F" if x.error else str(x.left) + (f"+{x.extra}" if x.extra else ""))
            cells.append(f"{cell:>20}")
        lines.append(f"{r.name:<34}{r.frames:>7}{r.phi_tokens:>5}{r.readable:>6}" + "".join(cells))
    return "\n".join(lines)


def verdicts(by_group: dict[str, list[Summary]]) -> list[str]:
    """Each phiscrub row against the plain RapidOCR baseline on recall, per group."""
    out = []
    for group, summaries in by_group.items():
        base = next((s for s in summaries if s.row == "rapidocr"), None)
        if base is None or base.readable == 0:
            continue
        for s in summaries:
            if s.row.startswith("phiscrub-"):
                verdict = "ahead" if s.recall > base.recall else ("equal" if s.recall == base.recall else "BEHIND")
                out.append(f"{group}: {s.row} recall {s.recall:.3f} vs plain RapidOCR {base.recall:.3f}: {verdict}")
    return out


# ---------------------------------------------------------------- the run


def first_with_pixels(images: list[Image]) -> tuple[Image, bytes]:
    """The first image that has pixel data, and its bytes (the warm-up file)."""
    import pydicom

    for img in images:
        data = img.load()
        if "PixelData" in pydicom.dcmread(BytesIO(data), stop_before_pixels=False):
            return img, data
    raise SystemExit("no image has pixel data")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not available():
        print("tesseract is not installed (apt-get install tesseract-ocr): nothing can be scored", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)  # pydicom and Presidio log per file
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # Tesseract's threads spin against each other on a small machine

    found, absent = candidates(args.single_frame)
    images = distinct(found)
    for line in absent:
        print(f"absent: {line}")
    if not images:
        print("no images found", file=sys.stderr)
        return 1
    print(f"{len(found)} files found, {len(images)} distinct (by sha256):")
    for img in images:
        print(f"  {img.name} ({img.group}, {img.size} bytes): {', '.join(img.locations)}")

    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    smallest, warm = first_with_pixels(sorted(images, key=lambda i: i.size))
    rows, skipped = build_rows(names, warm)
    warm_frames, warm_photometric = decode(warm)
    for name, row in rows.items():  # untimed warm-up (Presidio's prepare() already ran on it)
        if name != "presidio":
            try:
                row(Input(smallest.name, warm, warm_frames, warm_photometric))
            except Exception as exc:
                print(f"warm-up {name}: {type(exc).__name__}: {exc}", file=sys.stderr)

    ocr = _ocr_cache()
    results: list[ImageResult] = []
    start = time.perf_counter()
    for i, img in enumerate(images, 1):
        results.append(score_image(img, rows, ocr))
        print(f"  [{i}/{len(images)}] {img.name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    scored = [r for r in results if not r.skipped]
    groups = {g: [r for r in scored if r.group == g] for g in dict.fromkeys(r.group for r in scored)}
    by_group = {g: [summarise(n, rs) for n in rows] for g, rs in groups.items()}
    print()
    for group, summaries in by_group.items():
        print(summary_table(f"{group}: {len(groups[group])} images", summaries), "\n")
    if len(groups) > 1:
        print(summary_table(f"all: {len(scored)} images", [summarise(n, scored) for n in rows]), "\n")
    for name, why in skipped.items():
        print(f"row {name} skipped: {why}")
    print(image_table(results, list(rows)), "\n")
    for line in verdicts(by_group):
        print(line)
    for r in scored:
        for name, x in r.rows.items():
            if x.error:
                print(f"failed: {name} on {r.name}: {x.error}")
            if x.notes:
                print(f"note: {name} on {r.name}: {', '.join(x.notes)}")
    if args.json:
        report = {
            "settings": {"rows": list(rows), "skipped_rows": skipped, "single_frame": args.single_frame,
                         "presidio_commit": PRESIDIO_COMMIT, "cut_min": CUT_MIN},
            "absent": absent,
            "summary": {g: {s.row: {**asdict(s), "recall": s.recall} for s in ss} for g, ss in by_group.items()},
            "images": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows (default {','.join(ROWS)})")
    p.add_argument("--single-frame", action="store_true", help="leave out deid-data's multi-frame ultrasounds (the slow part)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="write per-image results (counts only) here")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())

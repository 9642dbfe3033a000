"""The text screen of pixels.text_redaction 'auto' (phiscrub.pixels.screen): what it costs per
slice and how often it fires, with text and without.

- cost: ``finds_text`` on 512x512 JSL CT slices, one onnxruntime thread (the issue's "one
  core"), median over the slices after one warm-up;
- recall: the share of JSL images (each with burned-in PHI) on which it fires, per subset;
- firing without text: on every text-free axial CT/MR slice at hand (pydicom's and
  pynetdicom's test files, deid-data's two CT slices) and on the JSL tuning images with every
  labelled key and value box painted over with its ring's median (text the labels miss stays:
  an upper bound);
- a whole series: N slices cost N x screen + (fired share) x N x the full 'sensitive' pass,
  both measured here. No text-free CT series with a clear licence is at hand, so the series
  figure is that sum, not a run.

    python bench/bench_screen.py [--stride 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("PHISCRUB_OCR_THREADS", "1")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402

from phiscrub.pixels import codec  # noqa: E402
from phiscrub.pixels.engines import get_engine  # noqa: E402
from phiscrub.pixels.screen import finds_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from bench_jsl import DATA, list_files  # noqa: E402


def _frames(ds: pydicom.Dataset) -> tuple[np.ndarray, str]:
    frames, layout = codec.decode(ds)
    return frames, layout.photometric


def _text_free() -> list[Path]:
    """Axial CT and MR slices without burned-in text, from test data others made."""
    import pydicom.data
    import pynetdicom

    out = [Path(pydicom.data.get_testdata_file(n)) for n in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm")]
    out.append(Path(pynetdicom.__file__).parent / "tests" / "dicom_files" / "CTImageStorage.dcm")
    try:
        import deid_data

        out += sorted((Path(deid_data.__file__).parent / "data" / "humans").glob("*"))
    except ImportError:
        pass
    return [p for p in out if p.is_file()]


def _painted(path: Path) -> tuple[np.ndarray, str, pydicom.Dataset]:
    """A JSL image with every labelled key and value box filled with its ring's median."""
    ds = pydicom.dcmread(path)
    frames, photometric = _frames(ds)
    img = frames[0].copy()
    for ann in json.loads(path.with_suffix(".json").read_text())["annotation"]:
        for part in ("key", "value"):
            box = ann.get(part, {}).get("bbox")
            if not box:
                continue
            x0, y0, x1, y1 = (max(0, v) for v in box)
            y0, x0, y1, x1 = max(0, y0 - 3), max(0, x0 - 3), y1 + 4, x1 + 4
            ring = np.concatenate([img[max(0, y0 - 3):y0, x0:x1].ravel(), img[y1:y1 + 3, x0:x1].ravel()])
            img[y0:y1, x0:x1] = np.median(ring) if ring.size else img.min()
    return img[None], photometric, ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--stride", type=int, default=1, help="every K-th JSL file per subset")
    args = ap.parse_args(argv)
    engine = get_engine("rapidocr")
    print(f"onnxruntime threads: {os.environ['PHISCRUB_OCR_THREADS']}")

    fired: dict[str, tuple[int, int]] = {}
    times: list[float] = []
    for subset in ("tune", "report"):
        files = list_files(DATA, subset, args.stride, None)
        hits = 0
        for i, f in enumerate(files):
            ds = pydicom.dcmread(f)
            frames, photometric = _frames(ds)
            t = time.perf_counter()
            found = finds_text(frames, photometric, engine, ds)
            dt = time.perf_counter() - t
            if i and frames.shape[1:3] == (512, 512):
                times.append(dt)
            hits += found
        fired[subset] = (hits, len(files))
    if not any(n for _, n in fired.values()):
        print(f"no JSL files under {DATA}: see bench/README.md")
        return 1
    per_slice = statistics.median(times) * 1000 if times else float("nan")
    print(f"screen on a 512x512 slice: median {per_slice:.1f} ms over {len(times)} JSL slices")
    for subset, (hits, n) in fired.items():
        print(f"JSL {subset}: fires on {hits}/{n} images with burned-in PHI ({hits / max(1, n):.3f})")

    free = _text_free()
    free_hits = []
    for p in free:
        ds = pydicom.dcmread(p)
        frames, photometric = _frames(ds)
        if finds_text(frames, photometric, engine, ds):
            free_hits.append(p.name)
    print(f"text-free axial slices (pydicom, pynetdicom, deid-data): fires on {len(free_hits)}/{len(free)}"
          + (f" ({', '.join(free_hits)})" if free_hits else ""))
    tune = list_files(DATA, "tune", args.stride, None)
    painted = 0
    for f in tune:
        frames, photometric, ds = _painted(f)
        painted += finds_text(frames, photometric, engine, ds)
    print(f"JSL tune images with their labelled text painted over: fires on {painted}/{len(tune)}"
          " (unlabelled text stays: an upper bound)")

    from phiscrub.keys import KeyRing
    from phiscrub.policy.config import from_mapping
    from phiscrub.transform import transform_dicom

    cfg = from_mapping({"pixels": {"text_redaction": "sensitive"}})
    full = []
    for f in tune[:20]:
        data = f.read_bytes()
        t = time.perf_counter()
        transform_dicom(data, cfg, KeyRing(b"bench-key-0123456789abcdef"), cfg.policy.digest())
        full.append(time.perf_counter() - t)
    full_s = statistics.median(full)
    rate = len(free_hits) / max(1, len(free))
    for n in (300,):
        clean = n * per_slice / 1000 + rate * n * full_s
        print(f"a {n}-slice text-free series: {n} x {per_slice:.0f} ms screen + {rate:.2f} x {n} x {full_s:.2f} s full"
              f" 'sensitive' pass = {clean:.0f} s of one core (full pass on every slice: {n * full_s:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

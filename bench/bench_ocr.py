"""OCR throughput on this machine: python bench/bench_ocr.py [repeats]

A benchmark, not a test (timings are noise on shared runners, never failures). Prints
best and median wall time for the pixel stage's detection path (detect_text + classify)
on 512 x 512 inputs: one 8-bit frame, one 16-bit CT frame, and a 30-frame cine clip.
Targets: >= 3 single frames per second, a 30-frame clip in under 2 s.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from phiscrub.dicom.text import PhiTerms
from phiscrub.pixels.engines import get_engine
from phiscrub.pixels.phi_match import classify
from phiscrub.pixels.views import detect_text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.pixels._burn
from tests.pixels._burn import burn, speckle, text_mask  # noqa: E402

LINES = {"DAVIDSON^DOUGLAS": (10, 24), "MRN4471923": (10, 48), "03/14/1952": (400, 24), "5.0 MHz": (430, 48),
         "L": (490, 256), "HR 72": (10, 500)}


def _frame(shift: int = 0, counter: int | None = None) -> np.ndarray:
    img = speckle((512, 512), seed=0, shift=shift)
    for text, org in LINES.items():
        burn(img, text_mask(img.shape, text, org), 255)
    if counter is not None:
        burn(img, text_mask(img.shape, f"{counter}/30", (440, 500)), 255)
    return img


def _time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    fn()  # warm: onnxruntime specialises kernels per input shape on first use
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts)


def main(repeats: int = 5) -> None:
    engine = get_engine()
    terms = PhiTerms()
    terms.add_name("DAVIDSON^DOUGLAS")
    terms.add_literal("MRN4471923")
    terms.add_date("19520314")
    gray = _frame()
    rgb = np.repeat(gray[:, :, None], 3, axis=2)[None]
    import cv2
    import pydicom
    from tests.conftest import TEST_FILES

    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    ct = cv2.resize(ds.pixel_array, (512, 512), interpolation=cv2.INTER_NEAREST)
    for text, org in LINES.items():
        burn(ct, text_mask(ct.shape, text, org), 4095)
    clip = np.stack([np.repeat(_frame(5 * k, k + 1)[:, :, None], 3, axis=2) for k in range(30)])

    def run(frames: np.ndarray, photometric: str, mode: str = "sensitive", window=None, ds=None) -> Callable[[], object]:
        def go() -> object:
            found = detect_text(frames, photometric, window, engine, ds=ds, read=mode != "all")
            return classify(found, terms, mode)

        return go

    cases = [
        ("1 frame 512x512 8-bit gray, sensitive", run(gray, "MONOCHROME2")),
        ("1 frame 512x512 RGB, sensitive", run(rgb, "RGB")),
        ("1 frame 512x512 16-bit CT, window+full views", run(ct, "MONOCHROME2", window=(40, 400), ds=ds)),
        ("1 frame 512x512 8-bit gray, all (no reading)", run(gray, "MONOCHROME2", "all")),
        ("30 frames 512x512 RGB cine, sensitive", run(clip, "RGB")),
        ("30 frames 512x512 RGB cine, all (no reading)", run(clip, "RGB", "all")),
    ]
    print(f"cpus={os.cpu_count()} threads={getattr(engine, 'settings', None)} load={os.getloadavg()}")
    for name, fn in cases:
        best, med = _time(fn, repeats)
        print(f"{name:48s} best {best:.3f} s  median {med:.3f} s  ({1 / med:.1f}/s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)

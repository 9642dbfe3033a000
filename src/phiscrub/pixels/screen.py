"""A quick look for text on images 'auto' would otherwise leave alone.

Why: an axial CT or MR slice's header says nothing of burned-in text, yet public sets (the
JSL set's report patients) print the patient's name, ID and birth date across the body.
Full detection costs 0.3-0.6 s a slice, too much for every slice of every series; leaving
them alone leaks. The screen runs the same text detector once, without reading, on one
min-max grey rendering at half size: about 20 ms for a 512x512 slice on one core. Where it
finds anything, the image gets the full 'sensitive' pass; where it finds nothing, the image
is left as it came.

Classical screens (morphological gradients, top-hat character chains, extreme-value
strokes) were tried first on the JSL tuning images: none found text on more than 0.61 of
the images without also firing on most text-free ones (bench/README.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from phiscrub.pixels.engines import TextEngine

HALVE_FROM = 384  # images whose longest side is at least this are screened at half size
FRAMES = 3  # frames of a multi-frame image screened: first, middle, last


def _grey(frame: np.ndarray, photometric: str, ds: Dataset | None) -> np.ndarray:
    """One frame as min-max scaled uint8 grey, in display polarity."""
    import cv2

    from phiscrub.pixels.views import linear, to_rgb

    if frame.ndim == 3 and frame.shape[-1] in (3, 4) or photometric == "PALETTE COLOR":
        rgb = to_rgb(frame[..., :3] if frame.ndim == 3 else frame, photometric, ds)
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    a = frame[..., 0] if frame.ndim == 3 else frame
    g = linear(a, float(a.min()), float(a.max()))
    return 255 - g if photometric == "MONOCHROME1" else g


def finds_text(frames: np.ndarray, photometric: str, engine: TextEngine, ds: Dataset | None = None) -> bool:
    """Whether the detector sees any text in a sample of the frames (N, H, W[, C])."""
    import cv2

    from phiscrub.pixels.views import sample_frames

    for frame in sample_frames(frames, FRAMES):
        g = _grey(frame, photometric, ds)
        if int(g.max()) == int(g.min()):  # a flat frame holds no text
            continue
        if max(g.shape) >= HALVE_FROM:
            g = cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
        found = engine.locate(bgr) if hasattr(engine, "locate") else engine.detect(bgr)
        if found:
            return True
    return False

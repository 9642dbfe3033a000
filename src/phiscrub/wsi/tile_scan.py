"""Opt-in scan of a slide's lowest-resolution levels for burned-in text (``wsi.tile_scan``).

Reads the smallest ``levels`` pyramid levels through OpenSlide, in overlapping tiles (text
across a tile edge is whole in one of them), runs the project's OCR detector on each tile
on its own (a tile that fails is retried once, then reported), and returns the boxes found,
in level-0 pixels, never the text. It reports; it does not re-encode tiles, since the
pyramid is kept bit-for-bit by policy: a slide with findings is for a person to review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TILE = 1024
OVERLAP = 128


def scan(path: Path, levels: int) -> list[dict[str, Any]]:
    import openslide

    from phiscrub.ocr.engine import get_engine
    from phiscrub.ocr.prepare import detect_text

    engine = get_engine("rapidocr")
    found: list[dict[str, Any]] = []
    with openslide.OpenSlide(str(path)) as osl:
        n = osl.level_count
        for lv in range(max(0, n - levels), n):
            w, h = osl.level_dimensions[lv]
            ds = osl.level_downsamples[lv]
            step = TILE - OVERLAP
            for y in range(0, max(1, h - OVERLAP), step):
                for x in range(0, max(1, w - OVERLAP), step):
                    tw, th = min(TILE, w - x), min(TILE, h - y)
                    img = np.asarray(osl.read_region((int(x * ds), int(y * ds)), lv, (tw, th)).convert("RGB"))
                    boxes = None
                    for _attempt in range(2):
                        try:
                            boxes = detect_text(img, "RGB", None, engine, read=False, variants="auto")
                            break
                        except Exception:  # noqa: BLE001 - retried once, then reported
                            boxes = None
                    if boxes is None:
                        found.append({"level": lv, "tile": [x, y, tw, th], "error": "ocr-failed"})
                        continue
                    for b in boxes:
                        bx, by, bw, bh = (int(v) for v in (b.x, b.y, b.w, b.h))
                        found.append({"level": lv, "action": "flagged",
                                      "box": [int((x + bx) * ds), int((y + by) * ds), int(bw * ds), int(bh * ds)]})
    return found

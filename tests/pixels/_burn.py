"""Burning text into test images and checking boxes against what was burned.

Text is drawn with OpenCV's built-in Hershey fonts, so the tests need no font files;
it is drawn into a mask first, so it can be burned into any dtype (putText is 8-bit only)
and the mask says exactly which pixels every character occupies.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from phiscrub.pixels.boxes import Box, TextBox

FONT = cv2.FONT_HERSHEY_SIMPLEX


def text_mask(shape: tuple[int, int], text: str, org: tuple[int, int], scale: float = 0.5, font: int = FONT) -> np.ndarray:
    """Boolean mask of the pixels ``text`` covers when drawn with its baseline at ``org``."""
    m = np.zeros(shape[:2], dtype=np.uint8)
    cv2.putText(m, text, org, font, scale, 255, 1, cv2.LINE_8)
    return m > 0


def burn(img: np.ndarray, mask: np.ndarray, value: int | tuple[int, ...]) -> None:
    """Set the masked pixels of ``img`` (any dtype, gray or color) to ``value``."""
    img[mask] = value


def uncovered(mask: np.ndarray, boxes: Iterable[Box | TextBox], pad: int = 0) -> int:
    """How many of the mask's pixels no box (grown by ``pad``) covers."""
    cover = np.zeros(mask.shape, dtype=bool)
    for b in boxes:
        cover[max(0, b.y - pad):b.y + b.h + pad, max(0, b.x - pad):b.x + b.w + pad] = True
    return int((mask & ~cover).sum())


def touched(mask: np.ndarray, boxes: Iterable[Box | TextBox]) -> bool:
    """Whether any box overlaps any pixel of the mask."""
    return uncovered(mask, boxes) < int(mask.sum())


def speckle(shape: tuple[int, int], seed: int = 0, shift: int = 0) -> np.ndarray:
    """An ultrasound-like sector of speckle on black, uint8; ``shift`` moves the speckle
    (as between cine frames) while the sector stays put."""
    rng = np.random.default_rng(seed)
    h, w = shape
    tex = cv2.GaussianBlur(rng.normal(90, 40, (h, w)).clip(0, 255).astype(np.uint8), (0, 0), 1.2)
    tex = np.roll(tex, shift, axis=0)
    fan = np.zeros((h, w), dtype=np.uint8)
    cv2.ellipse(fan, (w // 2, h // 8), (int(h * 0.8), int(h * 0.8)), 0, 55, 125, 255, -1)
    out = np.zeros((h, w), dtype=np.uint8)
    out[fan > 0] = tex[fan > 0]
    return out


def truetype_font() -> Path | None:
    """A DejaVu Sans file if the system has one (fonts-dejavu), else None."""
    for root in (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts")):
        if root.is_dir():
            for p in sorted(root.rglob("DejaVuSans.ttf")):
                return p
    return None

"""Rectangles shared by the OCR engines, the PHI matcher and the pixel redactor.

A box records where and why, never what: the recognised text stays in memory and is
never written to a manifest, an audit record or a log.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextBox:
    """A line or word an OCR engine found, in image pixel coordinates."""

    x: int
    y: int
    w: int
    h: int
    text: str
    score: float
    # A box taller than a line is read as line-high strips (the detector joins stacked
    # lines, and over colour Doppler it joins text with the flow): each strip with its
    # own reading, so that only the strips holding PHI need blanking. Empty for one line.
    lines: tuple[TextBox, ...] = ()


@dataclass(frozen=True)
class Box:
    """A region to blank. frame None means every frame. reason is a PHI-free category such
    as 'phi-name', 'phi-id', 'phi-date', 'pattern', 'all-text', 'unreadable' or 'static-rule'."""

    x: int
    y: int
    w: int
    h: int
    frame: int | None = None
    reason: str = "text"

    def padded(self, pad: int, rows: int, cols: int) -> Box:
        x0, y0 = max(0, self.x - pad), max(0, self.y - pad)
        x1, y1 = min(cols, self.x + self.w + pad), min(rows, self.y + self.h + pad)
        return Box(x0, y0, max(0, x1 - x0), max(0, y1 - y0), self.frame, self.reason)

    def manifest(self) -> dict[str, object]:
        return {"frame": self.frame, "x": self.x, "y": self.y, "w": self.w, "h": self.h, "reason": self.reason}

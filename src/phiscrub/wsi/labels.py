"""Label and macro images, per ``config.wsi``: remove, blank, replace or (macro) redact.

Why a module of its own: every TIFF-family vendor stores its label and macro as one more
directory, so what differs per vendor is only how they are found and encoded; the policy
(and what "blank" and "replace" look like) is the same everywhere.
"""

from __future__ import annotations

import cv2
import numpy as np

from phiscrub.wsi.tiff import T_TILE_L, T_TILE_W, Ifd, Rewriter

# Which end of a macro holds the slide label: the overview is taken with the label in view
# at one end of the long axis. Vendor modules say which; "redact" blanks this fraction.
LABEL_END_FRACTION = 0.35


def blank(w: int, h: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def render_label(w: int, h: int, pseudonym: str) -> np.ndarray:
    """A white label that shows the slide's pseudonym in black, as large as fits."""
    img = np.full((h, w, 3), 255, np.uint8)
    lines = ["PHISCRUB", pseudonym]
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, min(w, h) // 100)
    (tw, th), _ = cv2.getTextSize(max(lines, key=len), font, 1.0, thick)
    scale = max(0.2, min(0.9 * w / max(tw, 1), 0.8 * h / (len(lines) * max(th, 1) * 1.8)))
    (_, th), _ = cv2.getTextSize(pseudonym, font, scale, thick)
    y = int((h - len(lines) * th * 1.8) / 2 + th)
    for line in lines:
        (lw, _), _ = cv2.getTextSize(line, font, scale, thick)
        cv2.putText(img, line, (max(0, (w - lw) // 2), y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
        y += int(th * 1.8)
    return img


def redact_macro(img: np.ndarray, label_end: str) -> np.ndarray:
    """The label end of the macro blanked (black), the tissue overview kept as it was."""
    out = np.ascontiguousarray(img[..., :3]).copy()
    h, w = out.shape[:2]
    if label_end in ("left", "right"):
        n = int(round(w * LABEL_END_FRACTION))
        if label_end == "left":
            out[:, :n] = 0
        else:
            out[:, w - n:] = 0
    else:
        n = int(round(h * LABEL_END_FRACTION))
        if label_end == "top":
            out[:n] = 0
        else:
            out[h - n:] = 0
    return out


def encode(img: np.ndarray, how: str) -> tuple[bytes, int, int]:
    """(bytes, TIFF compression, photometric). Raw RGB is what every TIFF reader takes;
    JPEG where the vendor reader insists on it (NDPI, Philips)."""
    if how == "jpeg":
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return buf.tobytes(), 7, 6
    return np.ascontiguousarray(img[..., :3], np.uint8).tobytes(), 1, 2


def new_pixels(kind: str, action: str, w: int, h: int, pseudonym: str, source: np.ndarray | None,
               label_end: str) -> np.ndarray:
    if action == "blank":
        return blank(w, h)
    if action == "replace":
        return render_label(w, h, pseudonym)
    if action == "redact":
        if source is None or source.shape[:2] != (h, w):
            return blank(w, h)  # cannot read the macro: blank all of it rather than keep the label
        return redact_macro(source, label_end)
    raise ValueError(f"no pixels for action {action!r}")


def apply(rw: Rewriter, ifd: Ifd, kind: str, action: str, pseudonym: str, *, encoding: str = "raw",
          source: np.ndarray | None = None, label_end: str = "left") -> str:
    """Apply the policy to one associated image directory; returns the action taken."""
    if action == "remove":
        rw.unlink(ifd)
        return "remove"
    w, h = rw.t.dims(ifd)
    if action == "redact" and kind != "macro":
        action = "blank"
    pixels = new_pixels(kind, action, w, h, pseudonym, source, label_end)
    if rw.t.is_tiled(ifd):
        tw, th = rw.t.uint(ifd, T_TILE_W), rw.t.uint(ifd, T_TILE_L)
        if not tw or not th:
            rw.unlink(ifd)
            return "remove"
        padded = np.zeros(((h + th - 1) // th * th, (w + tw - 1) // tw * tw, 3), np.uint8)
        padded[:h, :w] = pixels
        tiles = [padded[y:y + th, x:x + tw] for y in range(0, padded.shape[0], th) for x in range(0, padded.shape[1], tw)]
        enc = [encode(np.ascontiguousarray(t), "raw") for t in tiles]
        rw.replace_image(ifd, [e[0] for e in enc], compression=1, photometric=2)
        return action
    data, comp, photo = encode(pixels, encoding)
    rw.replace_image(ifd, data, compression=comp, photometric=photo)
    return action

"""Stand-in pictures for a MIRAX label or macro: black, or a label showing the pseudonym.

JPEG because OpenSlide reads MIRAX associated images only as JPEG; OpenCV's encoder is
deterministic, so the same slide and key give the same bytes.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

from phiscrub.errors import CorruptFile

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_MAX_SIDE = 1 << 15


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the frame header, without decoding (a macro can be large)."""
    if not data.startswith(b"\xff\xd8"):
        raise CorruptFile("mrxs: an associated image is not a JPEG")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF and pos + 9 <= len(data):
            h, w = struct.unpack_from(">HH", data, pos + 5)
            if 0 < w <= _MAX_SIDE and 0 < h <= _MAX_SIDE:
                return w, h
            break
        pos += 2 + length
    raise CorruptFile("mrxs: an associated image has no usable JPEG frame header")


def _encode(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise CorruptFile("mrxs: could not encode a stand-in image")
    return bytes(buf)


def black_jpeg(w: int, h: int) -> bytes:
    return _encode(np.zeros((h, w, 3), np.uint8))


def label_jpeg(w: int, h: int, text: str) -> bytes:
    """White label, the pseudonym in black, as large as fits (the label every format gets)."""
    from phiscrub.wsi.labels import render_label

    return _encode(render_label(w, h, text))

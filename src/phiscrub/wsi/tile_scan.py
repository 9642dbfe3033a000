"""Opt-in scan of a slide's lowest-resolution levels for burned-in text (``wsi.tile_scan``),
and redaction of the tiles that hold it.

Why here and not in the pixel pipeline: a pyramid level is thousands of independently
coded tiles, and the policy keeps every tile bit-for-bit except those that carry text.
So the scan reads overlapping windows of the ``levels`` smallest levels (a window spans
neighbouring tiles, so text across a tile edge is whole in one of them), runs the project's
OCR detector on each, and then re-encodes only the tiles a text box touches, in the level's
own codec (:mod:`phiscrub.wsi.tile_codec`), with the boxes blanked. The new tile bytes go to
the end of the file (never over another tile), and the level's offset and byte-count
arrays are rewritten through the same :class:`Rewriter` as the metadata, so copy mode and
the in-place journal apply them alike. The old bytes of a replaced tile are zeroed unless
another tile entry shares them.

A window whose OCR fails is retried tile by tile; a tile that still fails is reported. A
tile with text that cannot be rewritten (an NDPI strip, whose restart-marker index would
go stale; an exotic codec) is reported as flagged, for a person to review. Records hold the
level, the tile index and the box in level pixels, never the text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phiscrub.errors import UnsupportedInput, VerificationFailed
from phiscrub.wsi import tile_codec
from phiscrub.wsi.tiff import (
    LONG,
    LONG8,
    T_STRIP_COUNTS,
    T_STRIP_OFFSETS,
    T_TILE_COUNTS,
    T_TILE_OFFSETS,
    Ifd,
    Layout,
    Rewriter,
    TiffSlide,
    TileTable,
    pack,
)

WINDOW = 1024  # level pixels read and searched at once
OVERLAP = 128  # windows overlap by this much, so a line across their edge is whole in one
PAD = 4  # pixels added around each box: anti-aliased edges and JPEG ringing
T_MCU_STARTS = 65426  # NDPI: where each restart interval of a strip starts

Detector = Callable[[np.ndarray], list[tuple[int, int, int, int]]]


@dataclass
class ScanResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    changed: dict[int, dict[int, str]] = field(default_factory=dict)  # ifd index -> tile -> sha256 of new bytes
    tables: dict[int, TileTable] = field(default_factory=dict)  # ifd index -> the output's table
    freed: list[tuple[int, int]] = field(default_factory=list)  # old tile bytes zeroed


def ocr_detector() -> Detector:
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.views import detect_text

    engine = get_engine("rapidocr")

    def detect(img: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [(int(b.x), int(b.y), int(b.w), int(b.h)) for b in detect_text(img, "RGB", None, engine, read=False, variants="auto")]

    return detect


def scanned_levels(t: TiffSlide, levels: list[Ifd], n: int) -> list[tuple[int, Ifd]]:
    """(position in ``levels``, directory) of the ``n`` smallest levels by pixel count."""
    order = sorted(range(len(levels)), key=lambda i: (t.dims(levels[i])[0] * t.dims(levels[i])[1], i))
    return sorted((i, levels[i]) for i in order[:n])


class _Level:
    """One level's grid of tiles, decoded on demand and kept only while windows need them."""

    def __init__(self, t: TiffSlide, ifd: Ifd, codec: tile_codec.TileCodec):
        self.t, self.ifd, self.c = t, ifd, codec
        self.w, self.h = t.dims(ifd)
        self.table = t.tile_table(ifd)
        self.across = -(-self.w // codec.width)
        self.down = -(-self.h // codec.height)
        if len(self.table) != self.across * self.down:
            raise UnsupportedInput("tile count does not match the level's size")
        self.cache: dict[int, np.ndarray] = {}

    def rect(self, idx: int) -> tuple[int, int, int, int]:
        r, c = divmod(idx, self.across)
        return c * self.c.width, r * self.c.height, self.c.width, self.c.height

    def stored(self, idx: int) -> bytes:
        return self.t.read(int(self.table.offsets[idx]), int(self.table.counts[idx]))

    def pixels(self, idx: int) -> np.ndarray:
        img = self.cache.get(idx)
        if img is None:
            rows = self.c.height
            if not self.t.is_tiled(self.ifd):  # the last strip may be short
                rows = min(rows, self.h - (idx // self.across) * self.c.height)
            if not int(self.table.counts[idx]):  # a missing tile (some encoders leave them): blank
                return np.zeros((rows, self.c.width, 3), np.uint8)
            img = tile_codec.decode(self.c, self.stored(idx), rows)
            img = img[..., :3] if img.shape[2] >= 3 else np.repeat(img[..., :1], 3, axis=2)
            self.cache[idx] = img
        return img

    def tiles_in(self, x: int, y: int, w: int, h: int) -> list[int]:
        c0, c1 = x // self.c.width, min(self.across - 1, (x + w - 1) // self.c.width)
        r0, r1 = y // self.c.height, min(self.down - 1, (y + h - 1) // self.c.height)
        return [r * self.across + c for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]

    def window(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.zeros((h, w, 3), np.uint8)
        for idx in self.tiles_in(x, y, w, h):
            tx, ty, _, _ = self.rect(idx)
            px = self.pixels(idx)
            sx0, sy0 = max(x, tx), max(y, ty)
            sx1, sy1 = min(x + w, tx + px.shape[1]), min(y + h, ty + px.shape[0])
            if sx1 > sx0 and sy1 > sy0:
                out[sy0 - y:sy1 - y, sx0 - x:sx1 - x] = px[sy0 - ty:sy1 - ty, sx0 - tx:sx1 - tx]
        return out

    def forget_above(self, y: int) -> None:
        """Tiles wholly above row ``y`` are not needed by any later window."""
        first_row = y // self.c.height
        for idx in [i for i in self.cache if i // self.across < first_row]:
            del self.cache[idx]


def _detect_retrying(detect: Detector, read: Callable[[], np.ndarray]) -> list[tuple[int, int, int, int]] | None:
    """Boxes in what ``read`` returns (decoding included), tried twice; None if both fail."""
    for _attempt in range(2):
        try:
            return detect(read())
        except Exception:  # noqa: BLE001 - decoders and OCR backends fail in many ways; retried, then reported
            continue
    return None


def _find_boxes(lv: _Level, detect: Detector, level_no: int, records: list[dict[str, Any]]) -> list[tuple[int, int, int, int]]:
    boxes: list[tuple[int, int, int, int]] = []
    step = WINDOW - OVERLAP
    for y in range(0, max(1, lv.h - OVERLAP), step):
        lv.forget_above(y)
        for x in range(0, max(1, lv.w - OVERLAP), step):
            ww, wh = min(WINDOW, lv.w - x), min(WINDOW, lv.h - y)
            found = _detect_retrying(detect, lambda x=x, y=y, ww=ww, wh=wh: lv.window(x, y, ww, wh))
            if found is not None:
                boxes += [(x + bx, y + by, bw, bh) for bx, by, bw, bh in found]
                continue
            for idx in lv.tiles_in(x, y, ww, wh):  # the window failed: each of its tiles on its own
                tx, ty, tw, th = lv.rect(idx)
                tw, th = min(tw, lv.w - tx), min(th, lv.h - ty)
                alone = _detect_retrying(detect, lambda tx=tx, ty=ty, tw=tw, th=th: lv.window(tx, ty, tw, th))
                if alone is None:
                    records.append({"level": level_no, "tile": idx, "error": "ocr-failed"})
                else:
                    boxes += [(tx + bx, ty + by, bw, bh) for bx, by, bw, bh in alone]
    lv.cache.clear()
    return _merge([_pad(b, lv.w, lv.h) for b in boxes if b[2] > 0 and b[3] > 0])


def _pad(b: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    p = max(PAD, b[3] // 6)
    x0, y0 = max(0, b[0] - p), max(0, b[1] - p)
    x1, y1 = min(w, b[0] + b[2] + p), min(h, b[1] + b[3] + p)
    return x0, y0, x1 - x0, y1 - y0


def _merge(boxes: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Overlapping boxes (the same line seen by two windows) joined into one."""
    out = sorted(set(boxes))
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]:
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    out[i] = (x0, y0, x1 - x0, y1 - y0)
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return sorted(out)


def _clip(b: tuple[int, int, int, int], r: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    x0, y0 = max(b[0], r[0]), max(b[1], r[1])
    x1, y1 = min(b[0] + b[2], r[0] + r[2]), min(b[1] + b[3], r[1] + r[3])
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def _shared(t: TiffSlide, off: int, n: int) -> bool:
    """Whether more than one tile or strip entry, in any directory, covers bytes of [off, off+n)."""
    hits = 0
    for ifd in t.ifds:
        tab = t.tile_table(ifd)
        hits += int(np.count_nonzero((tab.offsets < off + n) & (tab.offsets + tab.counts > off) & (tab.counts > 0)))
        if hits > 1:
            return True
    return False


def _redact_tile(lv: _Level, idx: int, parts: list[tuple[int, int, int, int]]) -> bytes:
    """The tile re-encoded with ``parts`` (level pixels) black, checked by decoding it back."""
    tx, ty, _, _ = lv.rect(idx)
    stored = lv.stored(idx)
    rows = lv.c.height if lv.t.is_tiled(lv.ifd) else min(lv.c.height, lv.h - (idx // lv.across) * lv.c.height)
    img = tile_codec.decode(lv.c, stored, rows).copy()
    for bx, by, bw, bh in parts:
        img[by - ty:by - ty + bh, bx - tx:bx - tx + bw] = 0
    data = tile_codec.encode(lv.c, img, stored)
    back = tile_codec.decode(lv.c, data, rows)
    if back.shape != img.shape:
        raise UnsupportedInput("re-encoded tile does not decode to its size")
    for bx, by, bw, bh in parts:  # the blanked block must read back dark (JPEG: a little ringing at its rim)
        inner = back[by - ty + 2:by - ty + bh - 2, bx - tx + 2:bx - tx + bw - 2]
        if inner.size and int(inner.max()) > 48:
            raise UnsupportedInput("re-encoded tile did not keep the blanked block")
    return data


def redact(t: TiffSlide, rw: Rewriter, levels: list[Ifd], n_levels: int, detect: Detector | None = None) -> ScanResult:
    """Scan the ``n_levels`` smallest levels and stage the redaction of every tile with text."""
    detect = detect or ocr_detector()
    res = ScanResult()
    for level_no, ifd in scanned_levels(t, levels, n_levels):
        try:
            lv = _Level(t, ifd, tile_codec.codec_of(t, ifd))
        except UnsupportedInput:
            res.records.append({"level": level_no, "error": "unsupported-codec"})
            continue
        boxes = _find_boxes(lv, detect, level_no, res.records)
        if not boxes:
            continue
        writable = t.layout is not Layout.NDPI and T_MCU_STARTS not in ifd.entries
        per_tile: dict[int, list[tuple[int, int, int, int]]] = {}
        for b in boxes:
            for idx in lv.tiles_in(*b):
                part = _clip(b, lv.rect(idx))
                if part is not None and int(lv.table.counts[idx]):  # a missing tile shows nothing
                    per_tile.setdefault(idx, []).append(part)
        offs, cnts = lv.table.offsets.copy(), lv.table.counts.copy()
        failed = 0
        for idx, parts in sorted(per_tile.items()):
            data = None
            if writable:
                for _attempt in range(2):
                    try:
                        data = _redact_tile(lv, idx, parts)
                        break
                    except Exception:  # noqa: BLE001 - a codec failure on one tile: retried, then reported
                        data = None
            action = "redacted" if data is not None else "flagged"
            for p in parts:
                res.records.append({"level": level_no, "tile": idx, "action": action, "box": list(p)})
            if data is None:
                if writable:
                    failed += 1
                    res.records.append({"level": level_no, "tile": idx, "error": "reencode-failed"})
                continue
            old_off, old_n = int(offs[idx]), int(cnts[idx])
            offs[idx], cnts[idx] = rw.alloc(data), len(data)
            res.changed.setdefault(ifd.index, {})[idx] = hashlib.sha256(data).hexdigest()
            if old_n and not _shared(t, old_off, old_n):
                rw.zero(old_off, old_n)
                res.freed.append((old_off, old_n))
        if failed:
            raise VerificationFailed(f"{failed} tile(s) with burned-in text could not be re-encoded")
        if ifd.index in res.changed:
            _stage_table(t, rw, ifd, TileTable(offs, cnts))
            res.tables[ifd.index] = TileTable(offs, cnts)
    return res


def _stage_table(t: TiffSlide, rw: Rewriter, ifd: Ifd, table: TileTable) -> None:
    otag, ctag = (T_TILE_OFFSETS, T_TILE_COUNTS) if t.is_tiled(ifd) else (T_STRIP_OFFSETS, T_STRIP_COUNTS)
    typ = LONG8 if t.layout is Layout.BIG else LONG
    if typ == LONG and int(table.offsets.max(initial=0)) >= 1 << 32:
        raise UnsupportedInput("classic TIFF past 4 GiB cannot take a re-encoded tile")
    for tag, arr in ((otag, table.offsets), (ctag, table.counts)):
        rw.set(ifd, tag, typ, len(arr), pack(t.bo, typ, arr.tolist()))

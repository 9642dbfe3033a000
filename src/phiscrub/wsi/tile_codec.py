"""Decode and re-encode one tile (or strip) of a pyramid level in the level's own codec.

Why by hand around imagecodecs: tifffile decodes whole pages and writes whole files, but a
tile redaction must turn one stored tile into pixels and back into bytes that the same
directory's tags still describe (compression, photometric, predictor, JPEGTables), so that
only that tile's offset and byte count change. imagecodecs does the codec work; this module
only picks its arguments from the tags, the way tifffile does for decoding
(``jpeg_decode_colorspace``: an RGB-photometric JPEG without a JFIF marker is stored as
RGB, as Aperio writes it).

A re-encoded JPEG tile is self-contained (its own quantisation and Huffman tables): a
table in the tile overrides the level's JPEGTables (TIFF Technical Note 2), and
imagecodecs cannot write an abbreviated stream against given tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phiscrub.errors import UnsupportedInput
from phiscrub.wsi.tiff import (
    T_BPS,
    T_COMPRESSION,
    T_JPEG_TABLES,
    T_PHOTOMETRIC,
    T_PLANAR,
    T_ROWS_PER_STRIP,
    T_SPP,
    T_TILE_L,
    T_TILE_W,
    Ifd,
    TiffSlide,
)

T_PREDICTOR, T_YCBCR_SUBSAMPLING = 317, 530
RAW, LZW, JPEG, DEFLATE, ADOBE_DEFLATE = 1, 5, 7, 8, 32946
SUPPORTED = (RAW, LZW, JPEG, DEFLATE, ADOBE_DEFLATE)
JPEG_QUALITY = 90


@dataclass(frozen=True)
class TileCodec:
    compression: int
    photometric: int
    spp: int
    predictor: int
    width: int  # of one tile or strip, in pixels
    height: int
    jpegtables: bytes | None
    subsampling: tuple[int, int]


def codec_of(t: TiffSlide, ifd: Ifd) -> TileCodec:
    """The codec of a level's tiles, or UnsupportedInput for what cannot be re-encoded
    exactly as the tags say (not 8-bit, separate planes, an unknown compression)."""
    comp = t.uint(ifd, T_COMPRESSION, 1)
    bps = t.uints(ifd, T_BPS) or [1]
    spp = t.uint(ifd, T_SPP, 1)
    if comp not in SUPPORTED:
        raise UnsupportedInput(f"tile compression {comp} cannot be re-encoded")
    if any(b != 8 for b in bps) or t.uint(ifd, T_PLANAR, 1) != 1 or spp not in (1, 3, 4):
        raise UnsupportedInput("only 8-bit interleaved tiles can be re-encoded")
    w, h = t.dims(ifd)
    if t.is_tiled(ifd):
        tw, th = t.uint(ifd, T_TILE_W), t.uint(ifd, T_TILE_L)
    else:
        tw, th = w, min(h, t.uint(ifd, T_ROWS_PER_STRIP, h) or h)
    if not tw or not th:
        raise UnsupportedInput("tile size missing")
    sub = t.uints(ifd, T_YCBCR_SUBSAMPLING) or [2, 2]
    return TileCodec(comp, t.uint(ifd, T_PHOTOMETRIC, 2), spp, t.uint(ifd, T_PREDICTOR, 1), tw, th,
                     t.blob(ifd, T_JPEG_TABLES), (sub[0], sub[1]) if len(sub) >= 2 else (2, 2))


def _is_jfif(data: bytes) -> bool:
    return b"JFIF\0" in data[:64]


def decode(c: TileCodec, data: bytes, rows: int | None = None) -> np.ndarray:
    """Pixels (rows, width, spp) uint8 of one stored tile; ``rows`` for a last strip that
    holds fewer rows than the others."""
    import imagecodecs

    rows = rows or c.height
    if c.compression == JPEG:
        colorspace = 2 if c.photometric == 2 and not _is_jfif(data) else None
        out = 2 if c.photometric in (2, 6) else None
        img = imagecodecs.jpeg8_decode(data, tables=c.jpegtables, colorspace=colorspace, outcolorspace=out)
    else:
        if c.compression == LZW:
            raw = imagecodecs.lzw_decode(data)
        elif c.compression in (DEFLATE, ADOBE_DEFLATE):
            raw = imagecodecs.zlib_decode(data)
        else:
            raw = bytes(data)
        need = rows * c.width * c.spp
        if len(raw) < need:
            raise UnsupportedInput("tile holds fewer bytes than its size")
        img = np.frombuffer(raw, np.uint8, need).reshape(rows, c.width, c.spp)
        if c.predictor == 2:
            img = imagecodecs.delta_decode(img, axis=1)
    img = np.asarray(img, np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    return img


def encode(c: TileCodec, img: np.ndarray, like: bytes) -> bytes:
    """Bytes for ``img`` that the level's tags describe; ``like`` is the tile it replaces
    (whether a JPEG of an RGB level carried a JFIF marker decides its colour space)."""
    import imagecodecs

    img = np.ascontiguousarray(img, np.uint8)
    if c.compression == JPEG:
        px = img if c.spp != 1 else img[..., 0]
        if c.photometric == 6:
            return bytes(imagecodecs.jpeg8_encode(px, level=JPEG_QUALITY, colorspace="RGB", outcolorspace="YCbCr",
                                                  subsampling=c.subsampling))
        if c.photometric == 2 and not _is_jfif(like):
            return bytes(imagecodecs.jpeg8_encode(px, level=JPEG_QUALITY, colorspace="RGB", outcolorspace="RGB"))
        return bytes(imagecodecs.jpeg8_encode(px, level=JPEG_QUALITY))
    if c.predictor == 2:
        img = np.ascontiguousarray(imagecodecs.delta_encode(img, axis=1))
    raw = img.tobytes()
    if c.compression == LZW:
        return bytes(imagecodecs.lzw_encode(raw))
    if c.compression in (DEFLATE, ADOBE_DEFLATE):
        return bytes(imagecodecs.zlib_encode(raw))
    return raw

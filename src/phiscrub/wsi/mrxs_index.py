"""Index.dat of an MRXS slide: where each stored image lies (Data file, offset, length).

Why by hand: no Python library reads MIRAX indexes. The layout is OpenSlide's
(openslide-vendor-mirax.c): "01.02" and the SLIDE_ID as a header, then two little-endian
int32 roots. The hierarchical root points to one list per zoom level; each list is a chain
of pages (count, next, then count records of image index, offset, length, file number).
The non-hierarchical root points to a table with one pointer per stored extra (label,
macro, position buffer...), each to a one-record page (1, x, 0, 0, offset, length, file).
Read through mmap, so a large index costs page cache, not heap.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from phiscrub.errors import CorruptFile

INDEX_VERSION = b"01.02"
_MAX_PAGES = 1 << 24


@dataclass(frozen=True)
class Stored:
    """One stored image or blob: its place, and where in Index.dat that place is written."""

    position: int
    size: int
    fileno: int
    entry_at: int  # offset in Index.dat of the (position, size, fileno) int32 triple


@dataclass
class Index:
    header_len: int
    table_base: int  # non-hierarchical pointer table
    nonhier: list[Stored]
    levels: list[list[tuple[int, Stored]]]  # per zoom level: (image index, place)


def _i32(buf, off: int) -> int:
    if off < 0 or off + 4 > len(buf):
        raise CorruptFile("mrxs: Index.dat pointer out of range")
    return struct.unpack_from("<i", buf, off)[0]


def read_index(path: Path, slide_id: str, zoom_levels: int, nonhier_count: int, datafiles: int) -> Index:
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < len(INDEX_VERSION) + len(slide_id) + 8:
                raise CorruptFile("mrxs: Index.dat is truncated")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, slide_id, zoom_levels, nonhier_count, datafiles)
    except OSError:
        raise CorruptFile("mrxs: Index.dat cannot be read") from None


def _parse(buf, slide_id: str, zoom_levels: int, nonhier_count: int, datafiles: int) -> Index:
    head = INDEX_VERSION + slide_id.encode("ascii", "replace")
    if bytes(buf[: len(head)]) != head:
        raise CorruptFile("mrxs: Index.dat header does not match Slidedat.ini (version or slide id)")
    hier_root = len(head)
    nonhier_root = hier_root + 4

    def place(at: int) -> Stored:
        pos, ln, fno = _i32(buf, at), _i32(buf, at + 4), _i32(buf, at + 8)
        if pos < 0 or ln < 0 or not 0 <= fno < datafiles:
            raise CorruptFile("mrxs: Index.dat record out of range")
        return Stored(pos, ln, fno, at)

    table = _i32(buf, nonhier_root)
    nonhier = []
    for r in range(nonhier_count):
        head_at = _i32(buf, table + 4 * r)
        if _i32(buf, head_at) != 0:
            raise CorruptFile("mrxs: Index.dat non-hierarchical list head is not 0")
        page = _i32(buf, head_at + 4)
        if _i32(buf, page) != 1:
            raise CorruptFile("mrxs: Index.dat non-hierarchical page does not hold one record")
        nonhier.append(place(page + 16))
    levels = []
    hier_table = _i32(buf, hier_root)
    pages = 0
    for z in range(zoom_levels):
        head_at = _i32(buf, hier_table + 4 * z)
        if _i32(buf, head_at) != 0:
            raise CorruptFile("mrxs: Index.dat level list head is not 0")
        page = _i32(buf, head_at + 4)
        recs: list[tuple[int, Stored]] = []
        while True:
            pages += 1
            if pages > _MAX_PAGES:
                raise CorruptFile("mrxs: Index.dat page chain does not end")
            count, nxt = _i32(buf, page), _i32(buf, page + 4)
            if count < 0 or page + 8 + 16 * count > len(buf):
                raise CorruptFile("mrxs: Index.dat page out of range")
            for i in range(count):
                at = page + 8 + 16 * i
                recs.append((_i32(buf, at), place(at + 4)))
            if nxt == 0:
                break
            page = nxt
        levels.append(recs)
    return Index(len(head), table, nonhier, levels)

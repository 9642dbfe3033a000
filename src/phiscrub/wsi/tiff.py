"""IFD-level read and rewrite of classic TIFF, BigTIFF and Hamamatsu NDPI, by hand with struct.

Why not tifffile: it reads all three layouts well (and we use it to verify), but it rewrites
only a tag value in place (``TiffTag.overwrite``), refuses NDPI files over 4 GB, and cannot
unlink a directory, swap an associated image or relocate a grown IFD. A slide is gigabytes
of tiles behind a few kilobytes of directories, so the rewrite is a list of byte patches
over the directories and associated images; the tiles are never read into memory, only
copied by the kernel (copy mode) or left where they are (in-place mode).

NDPI is a classic little-endian TIFF whose offsets outgrow 32 bits: the header's first-IFD
offset and each IFD's next offset are 8 bytes, and after the next offset each IFD holds one
4-byte word per entry with the high 32 bits of that entry's value/offset field.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from phiscrub.errors import CorruptFile, UnsupportedInput

TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}
TYPE_FMT = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 11: "f", 12: "d", 13: "I", 16: "Q", 17: "q", 18: "Q"}
ASCII, SHORT, LONG, UNDEFINED, LONG8 = 2, 3, 4, 7, 16
MAX_IFDS = 4096
MAX_TAGS = 4096
MAX_VALUE = 1 << 30  # one tag value over 1 GiB is not a slide, it is an attack or garbage

T_NEWSUBFILE, T_WIDTH, T_LENGTH, T_BPS, T_COMPRESSION, T_PHOTOMETRIC = 254, 256, 257, 258, 259, 262
T_DESCRIPTION, T_STRIP_OFFSETS, T_SPP, T_ROWS_PER_STRIP, T_STRIP_COUNTS = 270, 273, 277, 278, 279
T_PLANAR, T_TILE_W, T_TILE_L, T_TILE_OFFSETS, T_TILE_COUNTS, T_JPEG_TABLES = 284, 322, 323, 324, 325, 347
T_SUBIFDS = 330


class Layout(Enum):
    CLASSIC = "classic"
    BIG = "bigtiff"
    NDPI = "ndpi"


@dataclass
class Entry:
    tag: int
    type: int
    count: int
    field: bytes  # the raw value/offset field (NDPI: low 4 bytes + high 4 bytes)
    external: int | None  # where the value lives when it does not fit in the field

    @property
    def nbytes(self) -> int:
        return TYPE_SIZE.get(self.type, 1) * self.count


@dataclass
class Ifd:
    index: int
    offset: int
    size: int  # bytes the directory structure takes (count, entries, next, NDPI high words)
    next_pos: int  # where its next-IFD offset is stored
    entries: dict[int, Entry] = field(default_factory=dict)
    sub: bool = False  # a SubIFD (OME-TIFF pyramid level), outside the main chain


@dataclass(frozen=True)
class TileTable:
    """Where one directory's tiles (or strips) lie: two uint64 arrays of equal length."""

    offsets: np.ndarray
    counts: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets)

    def pairs(self) -> list[tuple[int, int]]:
        """(offset, count) tuples: only for small tables (associated images)."""
        return list(zip(self.offsets.tolist(), self.counts.tolist(), strict=True))

    def same(self, other: TileTable) -> bool:
        return np.array_equal(self.offsets, other.offsets) and np.array_equal(self.counts, other.counts)

    def digest(self) -> str:
        import hashlib

        h = hashlib.sha256()
        for a in (self.offsets, self.counts):
            h.update(np.ascontiguousarray(a, "<u8").data)
        return h.hexdigest()


class TiffSlide:
    """A parsed TIFF-family file: header, IFD chain and tag values, read with pread so that
    nothing but what is asked for is read."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._tables: dict[int, TileTable] = {}
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise UnsupportedInput(f"cannot open slide ({e.strerror})") from None
        try:
            self.size = os.fstat(self.fd).st_size
            self._parse()
        except BaseException:
            os.close(self.fd)
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TiffSlide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -------------------------------------------------------------------
    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.size:
            raise CorruptFile("slide truncated: a TIFF value lies past the end of the file")
        data = os.pread(self.fd, n, offset)
        if len(data) != n:
            raise CorruptFile("slide truncated while reading")
        return data

    def _parse(self) -> None:
        head = os.pread(self.fd, 16, 0)
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            raise UnsupportedInput("not a TIFF file")
        self.bo = "<" if head[:2] == b"II" else ">"
        version = struct.unpack(self.bo + "H", head[2:4])[0]
        if version == 43:
            if len(head) < 16:
                raise CorruptFile("BigTIFF header truncated")
            self.layout = Layout.BIG
            first = struct.unpack(self.bo + "Q", head[8:16])[0]
            self.header_ptr = 8
        elif version == 42:
            self.layout = Layout.CLASSIC
            first = struct.unpack(self.bo + "I", head[4:8])[0]
            self.header_ptr = 4
            if self.bo == "<" and self._is_ndpi(first):
                self.layout = Layout.NDPI
                first |= struct.unpack("<I", head[8:12])[0] << 32
        else:
            raise UnsupportedInput("not a TIFF file")
        self.ifds: list[Ifd] = []
        seen: set[int] = set()
        off = first
        while off:
            if off in seen:
                raise CorruptFile("TIFF directory chain loops")
            if len(self.ifds) >= MAX_IFDS:
                raise CorruptFile("too many TIFF directories")
            seen.add(off)
            ifd = self._read_ifd(len(self.ifds), off)
            self.ifds.append(ifd)
            off = self._next_of(ifd)
        if not self.ifds:
            raise CorruptFile("TIFF has no directories")
        for ifd in list(self.ifds):
            for sub in self.uints(ifd, T_SUBIFDS):
                if sub in seen or len(self.ifds) >= MAX_IFDS:
                    raise CorruptFile("TIFF SubIFDs loop or are too many")
                seen.add(sub)
                s = self._read_ifd(len(self.ifds), sub)
                s.sub = True
                self.ifds.append(s)

    def _is_ndpi(self, first: int) -> bool:
        """NDPI announces itself with its FileFormat tag (65420) in the first directory."""
        try:
            n = struct.unpack("<H", self.read(first, 2))[0]
            raw = self.read(first + 2, 12 * min(n, MAX_TAGS))
        except CorruptFile:
            return False
        return any(struct.unpack_from("<H", raw, 12 * i)[0] == 65420 for i in range(min(n, MAX_TAGS)))

    @property
    def entry_size(self) -> int:
        return 20 if self.layout is Layout.BIG else 12

    @property
    def field_size(self) -> int:
        return 8 if self.layout is Layout.BIG else 4

    def _read_ifd(self, index: int, off: int) -> Ifd:
        big = self.layout is Layout.BIG
        cnt_size = 8 if big else 2
        n = struct.unpack(self.bo + ("Q" if big else "H"), self.read(off, cnt_size))[0]
        if n == 0 or n > MAX_TAGS:
            raise CorruptFile("TIFF directory has an absurd number of entries")
        es = self.entry_size
        raw = self.read(off + cnt_size, n * es)
        next_pos = off + cnt_size + n * es
        size = cnt_size + n * es + (8 if self.layout is not Layout.CLASSIC else 4)
        high = b"\0" * (4 * n)
        if self.layout is Layout.NDPI:
            high = self.read(next_pos + 8, 4 * n)
            size += 4 * n
        ifd = Ifd(index, off, size, next_pos)
        for i in range(n):
            if big:
                tag, typ, count = struct.unpack_from(self.bo + "HHQ", raw, i * es)
                fld = raw[i * es + 12:i * es + 20]
            else:
                tag, typ, count = struct.unpack_from(self.bo + "HHI", raw, i * es)
                fld = raw[i * es + 8:i * es + 12]
                if self.layout is Layout.NDPI:
                    fld = fld + high[4 * i:4 * i + 4]
            if typ not in TYPE_SIZE:
                continue  # unknown type: libtiff skips it too; we drop it on rewrite
            nbytes = TYPE_SIZE[typ] * count
            if nbytes > MAX_VALUE:
                raise CorruptFile("TIFF tag value has an absurd size")
            ext = None
            if nbytes > self.field_size:
                ext = self._field_int(fld)
                if ext + nbytes > self.size:
                    raise CorruptFile("slide truncated: a TIFF value lies past the end of the file")
            ifd.entries[tag] = Entry(tag, typ, count, fld, ext)
        return ifd

    def _field_int(self, fld: bytes) -> int:
        if self.layout is Layout.BIG:
            return struct.unpack(self.bo + "Q", fld)[0]
        low = struct.unpack(self.bo + "I", fld[:4])[0]
        if self.layout is Layout.NDPI:
            low |= struct.unpack("<I", fld[4:8])[0] << 32
        return low

    def _next_of(self, ifd: Ifd) -> int:
        if self.layout is Layout.CLASSIC:
            return struct.unpack(self.bo + "I", self.read(ifd.next_pos, 4))[0]
        return struct.unpack(self.bo + "Q", self.read(ifd.next_pos, 8))[0]

    def raw(self, e: Entry) -> bytes:
        if e.external is None:
            return e.field[:e.nbytes]
        return self.read(e.external, e.nbytes)

    def ascii(self, ifd: Ifd, tag: int) -> str | None:
        e = ifd.entries.get(tag)
        if e is None or e.type not in (ASCII, UNDEFINED, 1):
            return None
        return self.raw(e).split(b"\0", 1)[0].decode("latin-1")

    def blob(self, ifd: Ifd, tag: int) -> bytes | None:
        e = ifd.entries.get(tag)
        return None if e is None else self.raw(e)

    def uint_array(self, ifd: Ifd, tag: int) -> np.ndarray:
        """An unsigned integer tag as a uint64 array, without a Python int per value."""
        e = ifd.entries.get(tag)
        if e is None or e.type not in (1, 3, 4, 13, 16, 18):
            return np.zeros(0, np.uint64)
        dt = np.dtype(TYPE_FMT[e.type]).newbyteorder(self.bo)
        vals = np.frombuffer(self.raw(e), dt, e.count).astype(np.uint64)  # a copy: writable, native order
        if self.layout is Layout.NDPI and e.count == 1 and e.type in (4, 13):
            vals[0] |= np.uint64(struct.unpack("<I", e.field[4:8])[0] << 32)  # NDPI: value high bits
        return vals

    def uints(self, ifd: Ifd, tag: int) -> list[int]:
        return self.uint_array(ifd, tag).tolist()

    def numbers(self, ifd: Ifd, tag: int) -> list[float]:
        """Any numeric tag as numbers (rationals divided out)."""
        e = ifd.entries.get(tag)
        if e is None:
            return []
        if e.type in (5, 10):
            v = struct.unpack(f"{self.bo}{2 * e.count}{'I' if e.type == 5 else 'i'}", self.raw(e))
            return [a / b if b else 0.0 for a, b in zip(v[::2], v[1::2], strict=True)]
        if e.type in TYPE_FMT:
            return list(struct.unpack(f"{self.bo}{e.count}{TYPE_FMT[e.type]}", self.raw(e)))
        return []

    def uint(self, ifd: Ifd, tag: int, default: int = 0) -> int:
        v = self.uints(ifd, tag)
        return v[0] if v else default

    def is_tiled(self, ifd: Ifd) -> bool:
        return T_TILE_OFFSETS in ifd.entries

    def dims(self, ifd: Ifd) -> tuple[int, int]:
        return self.uint(ifd, T_WIDTH), self.uint(ifd, T_LENGTH)

    def tile_table(self, ifd: Ifd) -> TileTable:
        """Offsets and byte counts of every tile or strip of one directory, checked against
        the file; read once per directory and kept as numpy arrays (a slide can hold
        millions of tiles: Python tuples of them cost ~100 bytes each, arrays 16)."""
        cached = self._tables.get(ifd.index) if ifd.index >= 0 else None
        if cached is not None:
            return cached
        if self.is_tiled(ifd):
            offs, cnts = self.uint_array(ifd, T_TILE_OFFSETS), self.uint_array(ifd, T_TILE_COUNTS)
        else:
            offs, cnts = self.uint_array(ifd, T_STRIP_OFFSETS), self.uint_array(ifd, T_STRIP_COUNTS)
        if len(offs) != len(cnts):
            raise CorruptFile("TIFF tile offsets and byte counts disagree")
        if len(offs) and int(np.where(cnts > 0, offs + cnts, 0).max()) > self.size:
            raise CorruptFile("slide truncated: image data lies past the end of the file")
        table = TileTable(offs, cnts)
        if ifd.index >= 0:
            self._tables[ifd.index] = table
        return table

    def metadata_ranges(self, *, tables: bool = True) -> list[tuple[int, int]]:
        """Every byte range that holds directories or tag values (not image data).
        ``tables`` False leaves out the tile/strip offset and count arrays: numbers that
        cannot hold text, and megabytes on a large slide."""
        skip = set() if tables else {T_STRIP_OFFSETS, T_STRIP_COUNTS, T_TILE_OFFSETS, T_TILE_COUNTS}
        out = [(0, 16)]
        for ifd in self.ifds:
            out.append((ifd.offset, ifd.size))
            for e in ifd.entries.values():
                if e.external is not None and e.tag not in skip:
                    out.append((e.external, e.nbytes))
        return out


# ---- rewriting -------------------------------------------------------------------------
def pack(bo: str, typ: int, values: list[int] | tuple[int, ...]) -> bytes:
    return struct.pack(f"{bo}{len(values)}{TYPE_FMT[typ]}", *values)


def ascii_value(text: str) -> tuple[int, int, bytes]:
    data = text.encode("latin-1", "replace") + b"\0"
    return ASCII, len(data), data


@dataclass
class NewValue:
    type: int
    count: int
    data: bytes


class Rewriter:
    """Stages changes to directories as byte patches over the original file plus a tail
    appended at its end. Nothing is written here: :func:`apply_copy` and the journal in
    :mod:`phiscrub.wsi.inplace` apply the patches."""

    def __init__(self, tiff: TiffSlide):
        self.t = tiff
        self.changes: dict[int, dict[int, NewValue | None]] = {}  # ifd index -> tag -> value/None
        self.unlinked: set[int] = set()
        self.zeros: list[tuple[int, int]] = []
        self.tail = bytearray()
        self.base = (tiff.size + 15) & ~15  # tail starts word-aligned past the end

    def set(self, ifd: Ifd, tag: int, typ: int, count: int, data: bytes) -> None:
        self.changes.setdefault(ifd.index, {})[tag] = NewValue(typ, count, data)

    def set_ascii(self, ifd: Ifd, tag: int, text: str) -> None:
        self.set(ifd, tag, *ascii_value(text))

    def delete(self, ifd: Ifd, tag: int) -> None:
        if tag in ifd.entries:
            self.changes.setdefault(ifd.index, {})[tag] = None

    def zero_orphan_ifd(self, offset: int) -> None:
        """An IFD reached only through a tag we delete (EXIF, GPS): zero it and its values."""
        try:
            sub = self.t._read_ifd(-1, offset)
        except CorruptFile:
            return
        for e in sub.entries.values():
            if e.external is not None:
                self.zero(e.external, e.nbytes)
        self.zero(sub.offset, sub.size)

    def zero(self, offset: int, n: int) -> None:
        if n > 0:
            self.zeros.append((offset, n))

    def alloc(self, data: bytes) -> int:
        """Room in the tail for new bytes; returns their file offset."""
        while len(self.tail) % 16:
            self.tail.append(0)
        off = self.base + len(self.tail)
        self.tail += data
        return off

    def unlink(self, ifd: Ifd) -> None:
        """Directory gone from the chain, its image data, values and structure zeroed."""
        self.unlinked.add(ifd.index)
        for o, c in self.t.tile_table(ifd).pairs():
            self.zero(o, c)
        for e in ifd.entries.values():
            if e.external is not None:
                self.zero(e.external, e.nbytes)
        self.zero(ifd.offset, ifd.size)

    def replace_image(self, ifd: Ifd, data: bytes | list[bytes], *, compression: int, photometric: int,
                      extra: dict[int, NewValue] | None = None) -> None:
        """Old strips or tiles zeroed; the new 8-bit RGB image (one strip, or a list of tiles on
        the old grid) in the tail."""
        for o, c in self.t.tile_table(ifd).pairs():
            self.zero(o, c)
        for tag in (T_JPEG_TABLES, 317, 530, 531, 532, T_TILE_OFFSETS, T_TILE_COUNTS, T_TILE_W, T_TILE_L):
            self.delete(ifd, tag)
        w, h = self.t.dims(ifd)
        bo = self.t.bo
        offtype = LONG8 if self.t.layout is Layout.BIG else LONG
        if isinstance(data, list):  # a tiled directory stays tiled (some readers insist), same grid
            offs = [self.alloc(tile) for tile in data]
            if offtype == LONG and max(offs) >= 1 << 32:
                raise UnsupportedInput("classic TIFF past 4 GiB cannot take a new associated image")
            self.set(ifd, T_TILE_OFFSETS, offtype, len(offs), pack(bo, offtype, offs))
            self.set(ifd, T_TILE_COUNTS, offtype, len(data), pack(bo, offtype, [len(x) for x in data]))
            for tag in (T_TILE_W, T_TILE_L):
                self.set(ifd, tag, LONG, 1, pack(bo, LONG, [self.t.uint(ifd, tag)]))
            for tag in (T_STRIP_OFFSETS, T_STRIP_COUNTS, T_ROWS_PER_STRIP):
                self.delete(ifd, tag)
        else:
            off = self.alloc(data)
            if self.t.layout is Layout.CLASSIC and off >= 1 << 32:
                raise UnsupportedInput("classic TIFF past 4 GiB cannot take a new associated image")
            self.set(ifd, T_STRIP_OFFSETS, offtype, 1, pack(bo, offtype, [off]) if offtype == LONG8 else _ndpi_pack(bo, off))
            self.set(ifd, T_STRIP_COUNTS, offtype, 1, pack(bo, offtype, [len(data)]))
            self.set(ifd, T_ROWS_PER_STRIP, LONG, 1, pack(bo, LONG, [h]))
        self.set(ifd, T_COMPRESSION, SHORT, 1, pack(bo, SHORT, [compression]))
        self.set(ifd, T_PHOTOMETRIC, SHORT, 1, pack(bo, SHORT, [photometric]))
        self.set(ifd, T_SPP, SHORT, 1, pack(bo, SHORT, [3]))
        self.set(ifd, T_BPS, SHORT, 3, pack(bo, SHORT, [8, 8, 8]))
        self.set(ifd, T_PLANAR, SHORT, 1, pack(bo, SHORT, [1]))
        for tag, v in (extra or {}).items():
            self.set(ifd, tag, v.type, v.count, v.data)

    # ---- finishing -----------------------------------------------------------------
    def patches(self) -> list[tuple[int, bytes]]:
        """Every write, in order: zeros first, then values, directories and pointers."""
        t = self.t
        out: list[tuple[int, bytes]] = [(o, bytes(n)) for o, n in self.zeros]
        late: list[tuple[int, bytes]] = []
        new_offsets: dict[int, int] = {}
        layouts: dict[int, tuple[int, bytes]] = {}
        kept = [ifd for ifd in t.ifds if ifd.index not in self.unlinked and not ifd.sub]
        if not kept:
            raise UnsupportedInput("every directory of the slide would be removed")
        for ifd in t.ifds:
            if ifd.index in self.unlinked:
                continue
            staged = self.changes.get(ifd.index)
            if not staged:
                new_offsets[ifd.index] = ifd.offset
                continue
            entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, field
            for tag in sorted(set(ifd.entries) | set(staged)):
                old = ifd.entries.get(tag)
                if tag in staged:
                    nv = staged[tag]
                    if old is not None and old.external is not None:
                        out.append((old.external, bytes(old.nbytes)))
                    if nv is None:
                        continue
                    entries.append((tag, nv.type, nv.count, self._place(nv, old, out)))
                else:
                    assert old is not None
                    entries.append((tag, old.type, old.count, old.field))
            body = self._ifd_bytes(entries)
            if len(entries) <= len(ifd.entries):
                out.append((ifd.offset, bytes(ifd.size)))
                new_offsets[ifd.index] = ifd.offset
            elif ifd.sub:
                raise UnsupportedInput("a SubIFD would grow; rewriting it is not supported")
            else:
                out.append((ifd.offset, bytes(ifd.size)))
                new_offsets[ifd.index] = self.alloc(bytes(len(body)))
            layouts[ifd.index] = (len(entries), body)
        # the tail (new values, relocated directories), then directories, then the chain
        if self.tail:
            out.append((self.base, bytes(self.tail)))
        for idx, (_n, body) in layouts.items():
            late.append((new_offsets[idx], body))
            if t.ifds[idx].sub:
                self._relink_sub(t.ifds[idx], late)
        for i, ifd in enumerate(kept):
            nxt = new_offsets[kept[i + 1].index] if i + 1 < len(kept) else 0
            pos = self._next_pos(new_offsets[ifd.index], layouts.get(ifd.index, (len(ifd.entries), b""))[0])
            if ifd.index in layouts or nxt != self.t._next_of(ifd):
                late.append((pos, self._offset_bytes(nxt)))
        late.append((t.header_ptr, self._offset_bytes(new_offsets[kept[0].index], header=True)))
        return out + late

    def _relink_sub(self, ifd: Ifd, late: list[tuple[int, bytes]]) -> None:
        """A SubIFD keeps its place; its next pointer (0 or the next SubIFD) is kept too."""
        late.append((self._next_pos(ifd.offset, self._count_after(ifd)), self._offset_bytes(self.t._next_of(ifd))))

    def _count_after(self, ifd: Ifd) -> int:
        staged = self.changes.get(ifd.index) or {}
        tags = (set(ifd.entries) | {t for t, v in staged.items() if v is not None}) - {t for t, v in staged.items() if v is None}
        return len(tags)

    def _place(self, nv: NewValue, old: Entry | None, out: list[tuple[int, bytes]]) -> bytes:
        fs = self.t.field_size
        if self.t.layout is Layout.NDPI and nv.count == 1 and nv.type in (4, 13) and len(nv.data) == 8:
            return nv.data  # an offset past 4 GiB: low word in the field, high word after
        if len(nv.data) <= fs:
            fld = nv.data.ljust(fs, b"\0")
            if self.t.layout is Layout.NDPI:
                fld = fld + (nv.data[4:8].ljust(4, b"\0") if len(nv.data) > 4 else b"\0\0\0\0")
            return fld
        if old is not None and old.external is not None and len(nv.data) <= old.nbytes:
            off = old.external
            out.append((off, nv.data))
        else:
            off = self.alloc(nv.data)
        return self._offset_field(off)

    def _offset_field(self, off: int) -> bytes:
        bo = self.t.bo
        if self.t.layout is Layout.BIG:
            return struct.pack(bo + "Q", off)
        if self.t.layout is Layout.NDPI:
            return struct.pack("<II", off & 0xFFFFFFFF, off >> 32)
        if off >= 1 << 32:
            raise UnsupportedInput("classic TIFF cannot point past 4 GiB")
        return struct.pack(bo + "I", off)

    def _offset_bytes(self, off: int, header: bool = False) -> bytes:
        if self.t.layout is Layout.CLASSIC:
            if off >= 1 << 32:
                raise UnsupportedInput("classic TIFF cannot point past 4 GiB")
            return struct.pack(self.t.bo + "I", off)
        if self.t.layout is Layout.NDPI and header:
            return struct.pack("<II", off & 0xFFFFFFFF, off >> 32)
        return struct.pack(self.t.bo + "Q", off)

    def _next_pos(self, ifd_off: int, n: int) -> int:
        if self.t.layout is Layout.BIG:
            return ifd_off + 8 + 20 * n
        return ifd_off + 2 + 12 * n

    def _ifd_bytes(self, entries: list[tuple[int, int, int, bytes]]) -> bytes:
        bo, lay = self.t.bo, self.t.layout
        n = len(entries)
        if lay is Layout.BIG:
            b = struct.pack(bo + "Q", n)
            b += b"".join(struct.pack(bo + "HHQ", tg, ty, c) + f for tg, ty, c, f in entries)
            return b + bytes(8)
        b = struct.pack(bo + "H", n)
        b += b"".join(struct.pack(bo + "HHI", tg, ty, c) + f[:4] for tg, ty, c, f in entries)
        if lay is Layout.NDPI:
            return b + bytes(8) + b"".join(f[4:8] for _, _, _, f in entries)
        return b + bytes(4)


def _ndpi_pack(bo: str, off: int) -> bytes:
    """An offset as a LONG value: NDPI keeps the high bits in the entry's high word, which
    :meth:`Rewriter._place` fills from bytes 4..8 of a value."""
    return struct.pack(bo + "II", off & 0xFFFFFFFF, off >> 32)[: 8 if off >> 32 else 4]


COPY_CHUNK = 64 << 20  # bytes per in-kernel copy call; writeback of each starts as soon as it is copied
_FALLBACK_ERRNOS = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM,
                              errno.ETXTBSY, errno.EBADF})


def apply_copy(src: Path, dst: Path, patches: list[tuple[int, bytes]], durable: bool = True) -> None:
    """Copy the slide in the kernel, then write the patches over the copy.

    Why by hand and not ``shutil.copyfile``: copy mode must run at the disk's speed, as
    ``cp`` does. ``copy_file_range`` is what ``cp`` uses (shared extents where the filesystem
    can, as XFS and Btrfs do; an in-kernel copy elsewhere); tiles never pass through
    Python and memory stays flat whatever the slide's size. When ``durable``, the writeback
    of each copied chunk is started at once (``sync_file_range``) so that the disk writes
    while the next chunk is copied, instead of all at once in the final ``fsync``.
    """
    sfd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(sfd).st_size
        dfd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            copy_range(sfd, dfd, size, writeback=durable)
            for off, data in patches:
                pwrite_all(dfd, data, off)
            if durable:
                os.fsync(dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)


def copy_range(sfd: int, dfd: int, size: int, *, writeback: bool = False) -> None:
    """The first ``size`` bytes of ``sfd`` to the same offsets of ``dfd``: copy_file_range,
    else sendfile (where the kernel or filesystem refuses it, as some do across filesystems),
    else pread/pwrite in 8 MiB pieces. Offsets are explicit, so neither file's
    position matters (sendfile alone moves the destination's, which is set before each call)."""
    methods: list[Any] = [m for m in (_by_copy_file_range, _by_sendfile) if m is not None] + [_by_pread]
    off = 0
    while off < size:
        want = min(COPY_CHUNK, size - off)
        try:
            n = methods[0](sfd, dfd, off, want)
        except OSError as e:
            if len(methods) > 1 and e.errno in _FALLBACK_ERRNOS:
                methods.pop(0)  # the next method, from where this one stopped
                continue
            raise
        if n == 0:
            if off == 0 and len(methods) > 1:  # some filesystems report no data at all: try the next
                methods.pop(0)
                continue
            raise CorruptFile("slide shrank while being copied")
        if writeback:
            _start_writeback(dfd, off, n)
        off += n


def _copy_file_range(sfd: int, dfd: int, off: int, n: int) -> int:
    return os.copy_file_range(sfd, dfd, n, off, off)


def _sendfile(sfd: int, dfd: int, off: int, n: int) -> int:
    os.lseek(dfd, off, os.SEEK_SET)
    return os.sendfile(dfd, sfd, off, n)


def _by_pread(sfd: int, dfd: int, off: int, n: int) -> int:
    data = os.pread(sfd, min(n, 8 << 20), off)
    pwrite_all(dfd, data, off)
    return len(data)


_by_copy_file_range = _copy_file_range if hasattr(os, "copy_file_range") else None
_by_sendfile = _sendfile if hasattr(os, "sendfile") else None
_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: Any = None  # resolved on first use: libc's sync_file_range, or False where there is none


def _start_writeback(fd: int, off: int, n: int) -> None:
    """Ask the kernel to start writing ``[off, off+n)`` to disk now, without waiting (Linux
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)``). Only a hint: durability is the ``fsync``
    that follows, so any failure here is ignored."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
                fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
                fn.restype = ctypes.c_int
                _sync_file_range = fn
            except (OSError, AttributeError):
                pass
    if _sync_file_range:
        _sync_file_range(fd, off, n, _SYNC_FILE_RANGE_WRITE)


def pwrite_all(fd: int, data: bytes, off: int) -> None:
    """All of ``data`` at ``off``: pwrite may write less than asked (signals, quotas)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view, off = view[n:], off + n

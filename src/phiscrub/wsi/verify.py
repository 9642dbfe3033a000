"""Independent checks on a written slide: it opens, leaks nothing, and its pyramid is intact.

Why re-read instead of trusting the rewrite: the output is opened with OpenSlide and
tifffile (the readers our users have), its properties and every metadata byte are searched
for the source's PHI values (plain, UTF-16LE and Base64 forms), associated images are
compared to the policy, and every level's tile offset and byte-count tables must be the
ones the plan recorded (as digests), with each tile the opt-in scan re-encoded holding the
planned bytes. In place there is no source left to compare with, and the planner already
refused any patch overlapping a tile.

Tile bytes (copy mode). The tiles are copied by the kernel (``copy_file_range``) and never
pass through Python, which is what lets copy mode run at ``cp``'s speed; reading every tile
of both files back would double the I/O. So by default (``wsi.verify_tiles: sample``) the
tile bytes compared with the source's are a documented, deterministic sample:

* every tile of the smallest level (fewest pixels), whole;
* in every other level, one tile in :data:`SAMPLE_STRIDE` (64): the tiles whose index ``i``
  has ``i % 64 == phase``, where ``phase`` is the first 32 bits of the level's planned
  tile-table digest modulo 64 (fixed for a slide, different between slides);
* the first and last tile of every level (by index), and the tiles on either side, in
  file order, of every place a patch may land: each directory, each tag value and each
  associated image of the source, and the end of the file (a short copy).

Damage to 64 or more consecutive tiles of a level (by index) cannot escape the sample, nor
can a patch that overran its place or a copy cut short. The sample reads about 1/64 of the
pyramid: 0.05-0.07 s of comparing on bench_wsi.py's 2.25 GiB slide (660,339 tiles, warm
cache), 0.15-0.2 s for the whole verification. ``wsi.verify_tiles: full`` compares every
tile byte instead (8 MiB reads into two reused buffers, so memory stays flat; 0.8-0.9 s on
that slide). Tile tables are numpy arrays and the plan keeps only their digests, so memory
grows with the tile count only by a few arrays the size of one table.

Problems are returned as PHI-free sentences; the caller quarantines on any.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phiscrub.errors import PhiscrubError
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.tiff import Ifd, TiffSlide, TileTable

if TYPE_CHECKING:
    from phiscrub.wsi.tiffscrub import LevelRecord, TiffVendor

CHUNK = 8 << 20  # bytes per read when comparing long runs of tiles
SMALL = 256 << 10  # a run up to this long is read whole into bytes
_MEMO: dict[str, tuple[set[str], list[LevelRecord]]] = {}


def remember(dst: Path, phi: set[str], levels: list[LevelRecord]) -> None:
    """What scrub saw in the source, for the verify that follows in this process."""
    _MEMO[str(Path(dst).resolve())] = (set(phi), levels)


def recall(dst: Path) -> tuple[set[str], list[LevelRecord]] | None:
    return _MEMO.pop(str(Path(dst).resolve()), None)


def needles(values: set[str]) -> list[bytes]:
    """Every form a value may take in slide metadata: text, UTF-16LE, Base64."""
    out: set[bytes] = set()
    for v in values:
        if len(v) < 4:
            continue
        low = v.lower()
        out.add(low.encode("utf-8", "ignore"))
        out.add(low.encode("utf-16-le"))
        for raw in (v.encode(), v.encode("utf-16-le")):
            b = base64.b64encode(raw)
            if len(b) > 8:
                out.add(b[4:-4])  # the middle survives whatever precedes it in a Base64 blob
    return [n for n in out if len(n) >= 4]


def scan_bytes(blob: bytes, values: set[str]) -> int:
    low = blob.lower()
    return sum(1 for n in needles(values) if n in low or n in blob)


def metadata_blob(t: TiffSlide) -> bytes:
    return b"".join(t.read(o, min(n, t.size - o)) for o, n in t.metadata_ranges(tables=False) if o < t.size)


SAMPLE_STRIDE = 64  # one tile in 64 of each level but the smallest (see the module docstring)


def patch_sites(t: TiffSlide, levels: list[Ifd]) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of every byte range of ``t`` a patch may touch: directories, tag
    values, the image data of every directory that is not a pyramid level (label, macro,
    thumbnail), and the end of the file, where the tail is appended."""
    ranges = t.metadata_ranges(tables=True)
    level_ids = {ifd.index for ifd in levels}
    for ifd in t.ifds:
        if ifd.index not in level_ids:
            tb = t.tile_table(ifd)
            ranges += zip(tb.offsets.tolist(), tb.counts.tolist(), strict=True)
    ranges.append((t.size, 0))
    arr = np.array(ranges, np.uint64).reshape(-1, 2)
    return arr[:, 0], arr[:, 0] + arr[:, 1]


def sample_mask(table: TileTable, digest: str, sites: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Which tiles of one (not the smallest) level the sampled check compares: one in
    :data:`SAMPLE_STRIDE` from a phase taken from the planned table ``digest``, the first
    and last by index, and the two file-order neighbours of every patch site."""
    n = len(table)
    mask = np.zeros(n, bool)
    if not n:
        return mask
    mask[int(digest[:8], 16) % SAMPLE_STRIDE::SAMPLE_STRIDE] = True
    mask[0] = mask[-1] = True
    offs, by_pos = table.offsets, None  # by_pos: tile index of each sorted offset (None: the same)
    if not bool((table.counts > 0).all()):
        by_pos = np.flatnonzero(table.counts > 0)
        offs = offs[by_pos]
    if len(offs) > 1 and not bool((offs[1:] >= offs[:-1]).all()):  # usually stored in order: no sort
        order = np.argsort(offs, kind="stable")
        offs, by_pos = offs[order], (order if by_pos is None else by_pos[order])
    if len(offs):
        starts, ends = sites
        before = np.searchsorted(offs, starts, side="left") - 1  # the last tile starting before a site
        after = np.searchsorted(offs, ends, side="left")  # the first tile starting at or after its end
        before, after = before[before >= 0], after[after < len(offs)]
        mask[before if by_pos is None else by_pos[before]] = True
        mask[after if by_pos is None else by_pos[after]] = True
    return mask


class _Buffers:
    """Two read buffers, made on the first long run and reused: comparing gigabytes
    allocates nothing per read; a sampled check of single tiles never makes them."""

    def __init__(self) -> None:
        self.views: tuple[memoryview, memoryview, np.ndarray, np.ndarray] | None = None

    def same(self, fa: int, fb: int, sa: int, sb: int, length: int) -> bool:
        if length <= SMALL:  # one sampled tile: two small reads and a memcmp beat the buffers
            a, b = os.pread(fa, length, sa), os.pread(fb, length, sb)
            return len(a) == length and a == b
        if self.views is None:
            ba, bb = bytearray(CHUNK), bytearray(CHUNK)
            self.views = memoryview(ba), memoryview(bb), np.frombuffer(ba, np.uint8), np.frombuffer(bb, np.uint8)
        va, vb, na, nb = self.views
        done = 0
        while done < length:
            k = min(CHUNK, length - done)
            if os.preadv(fa, [va[:k]], sa + done) != k or os.preadv(fb, [vb[:k]], sb + done) != k:
                return False
            if not np.array_equal(na[:k], nb[:k]):
                return False
            done += k
        return True


def _same_tiles(a: TiffSlide, b: TiffSlide, ta: TileTable, tb: TileTable, skip: list[int],
                mask: np.ndarray | None = None, bufs: _Buffers | None = None) -> bool:
    """The tiles selected by ``mask`` (all when None) hold the same bytes in both files,
    except those in ``skip`` (re-encoded by the scan, checked on their own). Tiles stored
    back to back in both files are read as one span."""
    if len(ta) != len(tb):
        return False
    keep = ta.counts > 0
    if mask is not None:
        keep &= mask
    if skip:
        keep[np.asarray(skip, np.int64)] = False
    if not np.array_equal(ta.counts[keep], tb.counts[keep]):
        return False
    oa, ob, n = ta.offsets[keep], tb.offsets[keep], ta.counts[keep]
    if len(oa) > 1 and not bool((oa[1:] >= oa[:-1]).all()):  # tiles are usually stored in order
        order = np.argsort(oa, kind="stable")
        oa, ob, n = oa[order], ob[order], n[order]
    if not len(n):
        return True
    joined = (oa[1:] == oa[:-1] + n[:-1]) & (ob[1:] == ob[:-1] + n[:-1])
    first = np.flatnonzero(np.concatenate(([True], ~joined)))
    lengths = np.add.reduceat(n, first)
    bufs = bufs or _Buffers()
    for sa, sb, ln in zip(oa[first].tolist(), ob[first].tolist(), lengths.tolist(), strict=True):
        if not bufs.same(a.fd, b.fd, sa, sb, ln):
            return False
    return True


def compare_tiles(src: TiffSlide, out: TiffSlide, src_levels: list[Ifd], out_tables: list[TileTable],
                  records: list[LevelRecord], mode: str = "sample") -> bool:
    """Tile bytes of the output against the source: every tile (``mode`` 'full') or the
    documented sample (see the module docstring)."""
    if not src_levels:
        return True
    smallest = min(range(len(src_levels)), key=lambda i: src.dims(src_levels[i])[0] * src.dims(src_levels[i])[1])
    sites = patch_sites(src, src_levels) if mode != "full" else None
    bufs = _Buffers()
    for k, (si, tb, r) in enumerate(zip(src_levels, out_tables, records, strict=True)):
        ta = src.tile_table(si)
        mask = None if sites is None or k == smallest else sample_mask(ta, r.digest, sites)
        if not _same_tiles(src, out, ta, tb, sorted(r.changed), mask, bufs):
            return False
    return True


def _changed_tiles_ok(out: TiffSlide, tb: TileTable, changed: dict[int, str]) -> bool:
    """Each re-encoded tile holds exactly the bytes the scan planned."""
    import hashlib

    for idx, digest in changed.items():
        if idx >= len(tb) or hashlib.sha256(out.read(int(tb.offsets[idx]), int(tb.counts[idx]))).hexdigest() != digest:
            return False
    return True


def verify_tiff(src: Path, dst: Path, job: SlideJob, vendor: TiffVendor) -> list[str]:
    import openslide

    from phiscrub.wsi.tiffscrub import plan

    problems: list[str] = []
    in_place = Path(src).resolve() == Path(dst).resolve()
    memo = recall(dst)
    if memo is None:
        if in_place:
            return ["in-place output cannot be verified without the scrub's record"]
        p = plan(src, job, vendor)
        memo = (p.phi, p.levels)
    phi, records = memo
    # readers
    out_dims: list = []
    try:
        osl = openslide.OpenSlide(str(dst))
    except Exception:  # noqa: BLE001 - any failure to open is the finding
        if in_place or _opens_in_openslide(src):
            return ["output does not open with OpenSlide"]
        # OpenSlide cannot read the source either (a big-endian OME-TIFF, as Bio-Formats
        # writes by default): the output is held to the readers the source opens in, and
        # label and macro are checked on the directories themselves
        osl = None
    if osl is not None:
        with osl:
            if osl.properties.get("openslide.vendor") != vendor.openslide_vendor:
                problems.append(f"OpenSlide reads the output as {osl.properties.get('openslide.vendor')!r}, "
                                f"not {vendor.openslide_vendor!r}")
            for name, value in osl.properties.items():
                if scan_bytes(str(value).encode("utf-8", "ignore"), phi):
                    problems.append(f"OpenSlide property {name} holds a source PHI value")
            problems += _check_associated(osl, job, vendor)
            out_dims = list(osl.level_dimensions)
    else:
        problems += _check_associated_directories(dst, job, vendor)
    problems += _check_tifffile(dst, vendor)
    # metadata bytes and pyramid
    try:
        with TiffSlide(dst) as out:
            if scan_bytes(metadata_blob(out), phi):
                problems.append("output metadata holds a source PHI value")
            out_levels = vendor.levels(out)
            out_tables = [out.tile_table(i) for i in out_levels]
            if [len(tb) for tb in out_tables] != [r.tiles for r in records]:
                problems.append("level or tile count differs from the source")
            elif any(tb.digest() != r.digest for tb, r in zip(out_tables, records, strict=True)):
                problems.append("tile offsets or byte counts are not the planned ones")
            elif not all(_changed_tiles_ok(out, tb, r.changed) for tb, r in zip(out_tables, records, strict=True)):
                problems.append("a re-encoded tile does not hold the planned bytes")
            elif not in_place:
                with TiffSlide(src) as s:
                    src_levels = vendor.levels(s)
                    if out.size < s.size:  # patches only overwrite or append: a shorter file lost bytes
                        problems.append("output is shorter than the source")
                    elif [s.dims(i) for i in src_levels] != [out.dims(i) for i in out_levels]:
                        problems.append("level dimensions differ from the source")
                    elif not compare_tiles(s, out, src_levels, out_tables, records, job.config.wsi.verify_tiles):
                        problems.append("tile bytes differ from the source")
            if osl is None:
                out_dims = [out.dims(i) for i in out_levels]
    except PhiscrubError as e:
        problems.append(f"output does not parse ({e})")
    if not out_dims:
        problems.append("no pyramid level in the output")
    return problems


def _opens_in_openslide(path: Path) -> bool:
    import openslide

    try:
        openslide.OpenSlide(str(path)).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means it does not
        return False


def _check_associated_directories(dst: Path, job: SlideJob, vendor: TiffVendor) -> list[str]:
    """Label and macro, where no OpenSlide reads the slide: a removed kind must have no
    directory left in the output; a blanked one must hold no non-zero stored byte."""
    import tifffile

    cfg = job.config.wsi
    problems = []
    with TiffSlide(dst) as out:
        top = [i.index for i in out.ifds if not i.sub]  # tifffile's page order
        kinds = {top.index(idx): kind for idx, kind in vendor.associated(out).items() if idx in top}
    for page, kind in kinds.items():
        action = {"label": cfg.label, "macro": cfg.macro}.get(kind)
        if action == "remove":
            problems.append(f"{kind} image still present")
        elif action == "blank":
            with tifffile.TiffFile(str(dst)) as tf:
                if tf.pages[page].asarray().any():
                    problems.append(f"{kind} image is not blank")
    return problems


def _check_tifffile(dst: Path, vendor: TiffVendor) -> list[str]:
    """The output opens with tifffile and has pages. tifffile reads the first directory's
    tile tables as Python ints (tens of bytes a tile), in objects held by reference cycles:
    they are collected before the tables are compared, so the two peaks do not add."""
    import gc

    problems = _open_with_tifffile(dst, vendor)
    gc.collect()
    return problems


def _open_with_tifffile(dst: Path, vendor: TiffVendor) -> list[str]:
    import tifffile

    try:
        with tifffile.TiffFile(str(dst), is_ndpi=vendor.name == "hamamatsu") as tf:
            if not len(tf.pages):
                return ["tifffile finds no page in the output"]
    except Exception:  # noqa: BLE001 - any failure to open is the finding
        return ["output does not open with tifffile"]
    return []


def _check_associated(osl, job: SlideJob, vendor: TiffVendor) -> list[str]:
    problems = []
    cfg = job.config.wsi
    for kind, action in (("label", cfg.label), ("macro", cfg.macro)):
        img = osl.associated_images.get(kind)
        if action == "remove":
            # a vendor that keeps directory positions (Aperio GT450) blanks instead of unlinking
            settled = hasattr(vendor, "settle") and img is not None and not np.asarray(img.convert("RGB")).any()
            if img is not None and not settled:
                problems.append(f"{kind} image still present")
            continue
        if img is None:
            continue  # the source had none
        px = np.asarray(img.convert("RGB"))
        if action == "blank" and px.any():
            problems.append(f"{kind} image is not blank")
        elif action == "replace" and not (px == 255).any():
            problems.append(f"{kind} image was not replaced")
        elif action == "redact":
            from phiscrub.wsi.labels import LABEL_END_FRACTION

            h, w = px.shape[:2]
            n = int(w * LABEL_END_FRACTION) - 1 if vendor.label_end in ("left", "right") else int(h * LABEL_END_FRACTION) - 1
            end = {"left": px[:, :n], "right": px[:, w - n:], "top": px[:n], "bottom": px[h - n:]}[vendor.label_end]
            if end.max(initial=0) > 8:  # JPEG ringing at the edge of the blanked block
                problems.append(f"{kind} label end is not blank")
    return problems

"""Independent checks on a written slide: it opens, leaks nothing, and its pyramid is intact.

Why re-read instead of trusting the rewrite: the output is opened with OpenSlide and
tifffile (the readers our users have), its properties and every metadata byte are searched
for the source's PHI values (plain, UTF-16LE and Base64 forms), associated images are
compared to the policy, and the tiles of every level are compared byte for byte with the
source by streaming large spans (memory stays flat). In place there is no source left to
compare with: the tile tables must be what the plan said (the source's, except the tiles the
opt-in scan re-encoded, whose new bytes must be the ones planned), and the planner already
refused any patch overlapping a tile. Tile tables are numpy arrays and the plan keeps only
their digests, so time and memory do not grow with the tile count beyond one table.

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
from phiscrub.wsi.tiff import TiffSlide, TileTable

if TYPE_CHECKING:
    from phiscrub.wsi.tiffscrub import LevelRecord, TiffVendor

CHUNK = 8 << 20
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


def _same_spans(a: TiffSlide, b: TiffSlide, ta: TileTable, tb: TileTable, skip: list[int]) -> bool:
    """Tile bytes compared in large sequential spans (tiles are stored back to back), except
    the tiles in ``skip`` (re-encoded by the scan, checked on their own)."""
    if not np.array_equal(ta.counts, tb.counts) and not skip:
        return False
    keep = ta.counts > 0
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
    for sa, sb, ln in zip(oa[first].tolist(), ob[first].tolist(), lengths.tolist(), strict=True):
        done = 0
        while done < ln:
            k = min(CHUNK, ln - done)
            if os.pread(a.fd, k, sa + done) != os.pread(b.fd, k, sb + done):
                return False
            done += k
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
    import tifffile

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
    try:
        osl = openslide.OpenSlide(str(dst))
    except Exception:  # noqa: BLE001 - any failure to open is the finding
        return ["output does not open with OpenSlide"]
    with osl:
        if osl.properties.get("openslide.vendor") != vendor.openslide_vendor:
            problems.append(f"OpenSlide reads the output as {osl.properties.get('openslide.vendor')!r}, "
                            f"not {vendor.openslide_vendor!r}")
        for name, value in osl.properties.items():
            if scan_bytes(str(value).encode("utf-8", "ignore"), phi):
                problems.append(f"OpenSlide property {name} holds a source PHI value")
        problems += _check_associated(osl, job, vendor)
        out_dims = list(osl.level_dimensions)
    try:
        with tifffile.TiffFile(str(dst), is_ndpi=vendor.name == "hamamatsu") as tf:
            if not len(tf.pages):
                problems.append("tifffile finds no page in the output")
    except Exception:  # noqa: BLE001
        problems.append("output does not open with tifffile")
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
                    if [s.dims(i) for i in src_levels] != [out.dims(i) for i in out_levels]:
                        problems.append("level dimensions differ from the source")
                    for si, tb, r in zip(src_levels, out_tables, records, strict=True):
                        if not _same_spans(s, out, s.tile_table(si), tb, sorted(r.changed)):
                            problems.append("tile bytes differ from the source")
                            break
    except PhiscrubError as e:
        problems.append(f"output does not parse ({e})")
    if not out_dims:
        problems.append("OpenSlide sees no level")
    return problems


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

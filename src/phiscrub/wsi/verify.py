"""Independent checks on a written slide: it opens, leaks nothing, and its pyramid is intact.

Why re-read instead of trusting the rewrite: the output is opened with OpenSlide and
tifffile (the readers our users have), its properties and every metadata byte are searched
for the source's PHI values (plain, UTF-16LE and Base64 forms), associated images are
compared to the policy, and the tiles of every level are compared byte for byte with the
source by streaming large spans (memory stays flat). In place there is no source left to
compare with: the tile offsets and counts must be what they were, and the planner already
refused any patch overlapping a tile.

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
from phiscrub.wsi.tiff import TiffSlide

if TYPE_CHECKING:
    from phiscrub.wsi.tiffscrub import TiffVendor

CHUNK = 8 << 20
_MEMO: dict[str, tuple[set[str], list[list[tuple[int, int]]]]] = {}


def remember(dst: Path, phi: set[str], level_ranges: list[list[tuple[int, int]]]) -> None:
    """What scrub saw in the source, for the verify that follows in this process."""
    _MEMO[str(Path(dst).resolve())] = (set(phi), level_ranges)


def recall(dst: Path) -> tuple[set[str], list[list[tuple[int, int]]]] | None:
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
    return b"".join(t.read(o, min(n, t.size - o)) for o, n in t.metadata_ranges() if o < t.size)


def _same_spans(a: TiffSlide, b: TiffSlide, ra: list[tuple[int, int]], rb: list[tuple[int, int]]) -> bool:
    """Tile bytes compared in large sequential spans (tiles are stored back to back)."""
    if [n for _, n in ra] != [n for _, n in rb]:
        return False
    spans: list[list[int]] = []
    for (oa, n), (ob, _) in sorted(zip(ra, rb, strict=True)):
        if n == 0:
            continue
        if spans and spans[-1][0] + spans[-1][2] == oa and spans[-1][1] + spans[-1][2] == ob:
            spans[-1][2] += n
        else:
            spans.append([oa, ob, n])
    for oa, ob, n in spans:
        done = 0
        while done < n:
            k = min(CHUNK, n - done)
            if os.pread(a.fd, k, oa + done) != os.pread(b.fd, k, ob + done):
                return False
            done += k
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
        memo = (p.phi, p.level_ranges)
    phi, src_ranges = memo
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
            out_ranges = [out.data_ranges(i) for i in out_levels]
            if [len(r) for r in out_ranges] != [len(r) for r in src_ranges]:
                problems.append("level or tile count differs from the source")
            elif in_place:
                if out_ranges != src_ranges:
                    problems.append("tile offsets or byte counts changed")
            else:
                with TiffSlide(src) as s:
                    src_levels = vendor.levels(s)
                    if [s.dims(i) for i in src_levels] != [out.dims(i) for i in out_levels]:
                        problems.append("level dimensions differ from the source")
                    for ra, rb in zip(src_ranges, out_ranges, strict=True):
                        if not _same_spans(s, out, ra, rb):
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
            if img is not None:
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

"""The scrub flow shared by every TIFF-family vendor: plan the patches, then apply them by
copy or in place.

Why one flow: Aperio, NDPI, SCN, BIF, Philips, OME and plain pyramidal TIFF differ in where
their metadata and associated images sit, not in what is done to them. A vendor module
describes its format (:class:`TiffVendor`); this module keys the pseudonyms, runs the
generic TIFF pass and the label policy, and refuses any patch that would touch a tile.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from phiscrub.errors import CorruptFile, VerificationFailed
from phiscrub.wsi import labels
from phiscrub.wsi.fields import FieldList, clean_serials, shift_date_text
from phiscrub.wsi.registry import SlideJob, SlideManifest
from phiscrub.wsi.tiff import Ifd, Rewriter, TiffSlide

# TIFF tags read or changed by the generic pass (numbers -> names in generic_tiff.yaml)
GENERIC_TAGS = {
    269: "DocumentName", 270: "ImageDescription", 285: "PageName", 305: "Software", 306: "DateTime",
    315: "Artist", 316: "HostComputer", 700: "XMP", 33432: "Copyright", 33723: "IPTC",
    34665: "ExifIFD", 34853: "GPSIFD", 37510: "UserComment", 42016: "ImageUniqueID",
}
PRIVATE_KEEP = {32997, 32998, 34675}  # ImageDepth, TileDepth, ICC profile: no identity in them


class TiffVendor(Protocol):
    name: str  # registry name and the yaml file name
    ext: str  # output extension
    openslide_vendor: str
    owned_tags: frozenset[int]  # tags the vendor pass handles itself
    label_end: str  # which end of the macro holds the label
    assoc_encoding: str  # 'raw' or 'jpeg' for a blanked/replaced associated image

    def levels(self, t: TiffSlide) -> list[Ifd]: ...

    def associated(self, t: TiffSlide) -> dict[int, str]: ...  # ifd index -> label/macro/thumbnail/...

    def metadata(self, ctx: Ctx) -> None: ...


@dataclass
class Ctx:
    """One scrub: the file, its planned patches, the keyed values and what was seen."""

    job: SlideJob
    t: TiffSlide
    rw: Rewriter
    manifest: SlideManifest
    slide_id: str
    pseudonym: str
    days: int
    phi: set[str] = field(default_factory=set)

    def decide(self, fields: FieldList, name: str, value: str, *, record: str | None = None) -> str | None:
        """The new value of a text field per the format's list, or None to remove it.
        The source value joins the PHI set the verifier looks for, unless kept."""
        return self.apply(fields.action(name), value, record or f"{fields.format}.{name}")

    def apply(self, act: str, value: str, record: str) -> str | None:
        self.manifest.fields[record] = act
        v = value.strip()
        if act == "keep" or not v:
            return value
        if act == "clean":  # only what is dropped counts as PHI; the rest stays in the output
            out = clean_serials(v)
            for tok in set(v.split()) - set(out.split()):
                self.see(tok)
            return out or None
        self.see(v)
        if act == "pseudonymize":
            return self.job.keys.value_pseudonym(v)
        if act == "shift_date":
            return shift_date_text(v, self.days)
        return None

    def see(self, value: str) -> None:
        v = value.strip()
        if len(v) >= 4:
            self.phi.add(v)


def content_id(t: TiffSlide, levels: list[Ifd]) -> str:
    """A slide identity from its image content only (tile layout and the smallest level's
    bytes), so the keyed name depends on neither the file name nor the barcode, and reading
    it costs the same whatever the slide's size."""
    h = hashlib.sha256()
    for ifd in levels:
        h.update(repr((t.dims(ifd), t.data_ranges(ifd)[:4096])).encode())
    if levels:
        budget = 4 << 20
        for off, n in t.data_ranges(levels[-1]):
            if budget <= 0:
                break
            take = min(n, budget)
            h.update(t.read(off, take))
            budget -= take
    return h.hexdigest()


def _forbid_tile_overlap(patches: list[tuple[int, bytes]], ranges: list[tuple[int, int]]) -> None:
    ranges = sorted(r for r in ranges if r[1])
    starts = [r[0] for r in ranges]
    for off, data in patches:
        i = bisect.bisect_right(starts, off + len(data) - 1)
        if i and ranges[i - 1][0] + ranges[i - 1][1] > off:
            raise VerificationFailed("a metadata patch would overlap pyramid tile data")


@dataclass
class Plan:
    patches: list[tuple[int, bytes]]
    manifest: SlideManifest
    phi: set[str]
    level_ranges: list[list[tuple[int, int]]]


def plan(src: Path, job: SlideJob, vendor: TiffVendor) -> Plan:
    """Everything the scrub will write, computed from the source without changing it."""
    from phiscrub.wsi.generic_tiff import scrub_common

    with TiffSlide(src) as t:
        levels = vendor.levels(t)
        if not levels:
            raise CorruptFile("slide has no pyramid level")
        cid = content_id(t, levels)
        pol = job.config.policy
        ctx = Ctx(job, t, Rewriter(t), SlideManifest(format=vendor.name), cid,
                  job.keys.token("slide", cid), job.keys.date_offset("slide:" + cid, pol.date_shift_min, pol.date_shift_max))
        vendor.metadata(ctx)
        scrub_common(ctx, vendor.owned_tags)
        assoc = vendor.associated(t)
        macro_pixels = _macro_pixels(src, vendor) if job.config.wsi.macro == "redact" and "macro" in assoc.values() else None
        for idx, kind in sorted(assoc.items()):
            action = {"label": job.config.wsi.label, "macro": job.config.wsi.macro}.get(kind, "keep")
            if action == "keep":
                ctx.manifest.associated[kind] = "keep"
                continue
            ctx.manifest.associated[kind] = labels.apply(
                ctx.rw, t.ifds[idx], kind, action, ctx.pseudonym, encoding=vendor.assoc_encoding,
                source=macro_pixels if kind == "macro" else None, label_end=vendor.label_end)
        level_ranges = [t.data_ranges(ifd) for ifd in levels]
        ctx.manifest.levels = len(levels)
        ctx.manifest.tiles = sum(len(r) for r in level_ranges)
        patches = ctx.rw.patches()
        _forbid_tile_overlap(patches, [r for lr in level_ranges for r in lr])
        return Plan(patches, ctx.manifest, ctx.phi, level_ranges)


def _macro_pixels(src: Path, vendor: TiffVendor) -> np.ndarray | None:
    import openslide

    try:
        with openslide.OpenSlide(str(src)) as osl:
            img = osl.associated_images.get("macro")
            return None if img is None else np.asarray(img.convert("RGB"))
    except openslide.OpenSlideError:
        return None


def scrub_tiff(src: Path, dst: Path, job: SlideJob, vendor: TiffVendor) -> SlideManifest:
    from phiscrub.wsi import verify
    from phiscrub.wsi.journal import apply_in_place
    from phiscrub.wsi.tiff import apply_copy

    p = plan(src, job, vendor)
    if job.in_place:
        apply_in_place(src, p.patches)
    else:
        apply_copy(src, dst, p.patches)
    verify.remember(dst, p.phi, p.level_ranges)
    return p.manifest

"""The scrub flow shared by every TIFF-family vendor: plan the patches, then apply them by
copy or in place.

Why one flow: Aperio, NDPI, SCN, BIF, Philips, OME and plain pyramidal TIFF differ in where
their metadata and associated images sit, not in what is done to them. A vendor module
describes its format (:class:`TiffVendor`); this module keys the pseudonyms, runs the
generic TIFF pass and the label policy, and refuses any patch that would touch a tile.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

from phiscrub.errors import CorruptFile, VerificationFailed
from phiscrub.policy.actions import Option
from phiscrub.wsi import dates, labels
from phiscrub.wsi.fields import FieldList, clean_serials
from phiscrub.wsi.registry import SlideFormat, SlideJob, SlideManifest
from phiscrub.wsi.tiff import Ifd, Rewriter, TiffSlide, TileTable

# TIFF tags the generic pass treats per generic_tiff.yaml (numbers -> names there); every
# other tag is kept only when tiff_tags.yaml names it (kept_tags)
GENERIC_TAGS = {
    269: "DocumentName", 270: "ImageDescription", 271: "Make", 272: "Model", 285: "PageName",
    305: "Software", 306: "DateTime", 315: "Artist", 316: "HostComputer", 700: "XMP", 33432: "Copyright",
    33723: "IPTC", 34665: "ExifIFD", 34853: "GPSIFD", 37510: "UserComment", 42016: "ImageUniqueID",
}


@cache
def kept_tags() -> frozenset[int]:
    """The structural tags every directory keeps, from tiff_tags.yaml (data a reviewer reads)."""
    text = resources.files("phiscrub.policy.data").joinpath("wsi", "tiff_tags.yaml").read_text()
    doc = yaml.safe_load(text) or {}
    tags = frozenset(int(k) for k in (doc.get("structure") or {}))
    if tags & set(GENERIC_TAGS):
        raise ValueError("wsi/tiff_tags.yaml: a structure tag is also in generic_tiff.yaml")
    return tags


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

    # optional: def settle(self, t, assoc, actions, notes) -> None, to amend the per-directory
    # actions where the format's readers would misname what is left (see aperio.Aperio.settle);
    # def patient(self, t) -> str | None and def barcode(self, t) -> str | None, for the
    # identity the date offset is keyed on (wsi/patients.py)


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

    def rewrite_ascii(self, t: TiffSlide, rw: Rewriter, ifd: Ifd, tag: int, fields: FieldList, name: str, record: str) -> None:
        """One ASCII tag per the format's list: removed, replaced or left as it is."""
        value = t.ascii(ifd, tag) or ""
        new = self.decide(fields, name, value, record=record)
        if new is None:
            rw.delete(ifd, tag)
        elif new != value:
            rw.set_ascii(ifd, tag, new)

    def apply(self, act: str, value: str, record: str) -> str | None:
        policy = self.job.config.policy
        if act in ("device", "device_clean"):
            act = "keep" if policy.has(Option.RETAIN_DEVICE_IDENTITY) else \
                {"device": "pseudonymize", "device_clean": "clean"}[act]
        v = value.strip()
        if act in dates.KINDS:
            new, done = dates.apply(act, v, policy, self.days) if v else (value, "keep")
            self.manifest.fields[record] = done
            if done != "keep":
                self.see(v)
            return new
        self.manifest.fields[record] = act
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
        return None

    def see(self, value: str) -> None:
        v = value.strip()
        if len(v) >= 4:
            self.phi.add(v)


_CID_MEMO: dict[tuple[int, int, int, int], str] = {}


def content_id(t: TiffSlide, levels: list[Ifd]) -> str:
    """A slide identity from its image content only (tile layout and the smallest level's
    bytes), so the keyed name depends on neither the file name nor the barcode, and reading
    it costs the same whatever the slide's size. Remembered per file state (device, inode,
    size, mtime): naming the output and planning the scrub both ask for it."""
    st = os.fstat(t.fd)
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _CID_MEMO:
        return _CID_MEMO[key]
    h = hashlib.sha256()
    for ifd in levels:
        tab = t.tile_table(ifd)
        head = list(zip(tab.offsets[:4096].tolist(), tab.counts[:4096].tolist(), strict=True))
        h.update(repr((t.dims(ifd), head)).encode())
    if levels:
        budget = 4 << 20
        tab = t.tile_table(levels[-1])
        for off, n in zip(tab.offsets.tolist(), tab.counts.tolist(), strict=True):
            if budget <= 0:
                break
            take = min(n, budget)
            h.update(t.read(off, take))
            budget -= take
    if len(_CID_MEMO) > 64:
        _CID_MEMO.clear()
    _CID_MEMO[key] = h.hexdigest()
    return _CID_MEMO[key]


def _forbid_tile_overlap(patches: list[tuple[int, bytes]], tables: list[TileTable],
                         allowed: list[tuple[int, int]] | None = None) -> None:
    """No patch may touch tile bytes, except the old bytes of tiles the scan replaced
    (``allowed``: exactly those ranges). Vectorised: a slide can hold millions of tiles."""
    if not tables or not patches:
        return
    offs = np.concatenate([tb.offsets for tb in tables])
    ends = offs + np.concatenate([tb.counts for tb in tables])
    keep = ends > offs
    if allowed:
        free = np.array(sorted(allowed), np.uint64).reshape(-1, 2)
        keep &= ~_is_pair_in(offs, ends - offs, free)
    offs, ends = offs[keep], ends[keep]
    if len(offs) > 1 and not bool((offs[1:] >= offs[:-1]).all()):  # usually stored in order: no sort
        order = np.argsort(offs, kind="stable")
        offs, ends = offs[order], ends[order]
    starts, reach = offs, np.maximum.accumulate(ends) if len(ends) else ends
    p_off = np.array([o for o, _ in patches], np.uint64)
    p_end = p_off + np.array([len(d) for _, d in patches], np.uint64)
    i = np.searchsorted(starts, p_end, side="left")  # tiles starting before each patch ends
    hit = (i > 0) & (p_end > p_off)
    if hit.any() and bool((reach[np.maximum(i[hit], 1) - 1] > p_off[hit]).any()):
        raise VerificationFailed("a metadata patch would overlap pyramid tile data")


def _is_pair_in(offs: np.ndarray, cnts: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """For each (offs[i], cnts[i]): whether it is one of ``pairs`` (sorted (offset, count) rows)."""
    j = np.searchsorted(pairs[:, 0], offs, side="left")
    j = np.minimum(j, len(pairs) - 1)
    return (pairs[j, 0] == offs) & (pairs[j, 1] == cnts)


@dataclass
class LevelRecord:
    """What the output's level must look like: its tile table (as a digest, so memory does
    not grow with the tile count) and the tiles the scan replaced, with their new bytes'
    digests; every other tile is the source's, byte for byte."""

    tiles: int
    digest: str
    changed: dict[int, str] = field(default_factory=dict)


@dataclass
class Plan:
    patches: list[tuple[int, bytes]]
    manifest: SlideManifest
    phi: set[str]
    levels: list[LevelRecord]


def plan(src: Path, job: SlideJob, vendor: TiffVendor) -> Plan:
    """Everything the scrub will write, computed from the source without changing it."""
    from phiscrub.wsi.generic_tiff import scrub_common
    from phiscrub.wsi.patients import slide_identity

    with TiffSlide(src) as t:
        levels = vendor.levels(t)
        if not levels:
            raise CorruptFile("slide has no pyramid level")
        cid = content_id(t, levels)
        pol = job.config.policy
        who, why = slide_identity(job, src, vendor, t, cid)
        ctx = Ctx(job, t, Rewriter(t), SlideManifest(format=vendor.name), cid,
                  job.keys.token("slide", cid), job.keys.date_offset(who, pol.date_shift_min, pol.date_shift_max))
        ctx.manifest.fields["<date offset>"] = why  # what it was keyed on: 'patient field', 'mapping' or 'slide'
        vendor.metadata(ctx)
        scrub_common(ctx, vendor.owned_tags)
        assoc = vendor.associated(t)
        macro_pixels = _macro_pixels(src, vendor) if job.config.wsi.macro == "redact" and "macro" in assoc.values() else None
        actions = {idx: {"label": job.config.wsi.label, "macro": job.config.wsi.macro}.get(kind, "keep")
                   for idx, kind in assoc.items()}
        settle = getattr(vendor, "settle", None)
        if settle is not None:
            settle(t, assoc, actions, ctx.manifest.notes)
        for idx, kind in sorted(assoc.items()):
            action = actions[idx]
            if action == "keep":
                ctx.manifest.associated[kind] = "keep"
                continue
            ctx.manifest.associated[kind] = labels.apply(
                ctx.rw, t.ifds[idx], kind, action, ctx.pseudonym, encoding=vendor.assoc_encoding,
                source=macro_pixels if kind == "macro" else None, label_end=vendor.label_end)
        tables = [t.tile_table(ifd) for ifd in levels]
        scan = None
        if job.config.wsi.tile_scan:
            from phiscrub.wsi.tile_scan import redact

            scan = redact(t, ctx.rw, levels, job.config.wsi.tile_scan_levels)
            ctx.manifest.tile_redactions = scan.records
        ctx.manifest.levels = len(levels)
        ctx.manifest.tiles = sum(len(tb) for tb in tables)
        patches = ctx.rw.patches()
        _forbid_tile_overlap(patches, tables, scan.freed if scan else [])
        records = []
        for ifd, tb in zip(levels, tables, strict=True):
            out = scan.tables.get(ifd.index, tb) if scan else tb
            records.append(LevelRecord(len(tb), out.digest(), dict(scan.changed.get(ifd.index, {})) if scan else {}))
        return Plan(patches, ctx.manifest, ctx.phi, records)


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
    verify.remember(dst, p.phi, p.levels)
    return p.manifest


def tiff_format(name: str, vendor: TiffVendor, test: Callable[[TiffSlide], bool]) -> SlideFormat:
    """One TIFF-based vendor as a registry entry: sniffing parses the directories and asks
    ``test`` (never raising: a file that does not parse is not this vendor's), scrubbing and
    verifying are the shared TIFF flow with the vendor's own rules."""

    def sniff(path: Path) -> bool:
        try:
            with TiffSlide(path) as t:
                return bool(test(t))
        except Exception:  # noqa: BLE001 - sniffing never raises
            return False

    def scrub(src: Path, dst: Path, job: SlideJob) -> SlideManifest:
        return scrub_tiff(src, dst, job, vendor)

    def verify(src: Path, dst: Path, job: SlideJob) -> list[str]:
        from phiscrub.wsi.verify import verify_tiff

        return verify_tiff(src, dst, job, vendor)

    return SlideFormat(name, sniff, scrub, verify, vendor)

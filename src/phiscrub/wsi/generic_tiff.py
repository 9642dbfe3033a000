"""Generic pyramidal TIFF, and the TIFF-tag pass applied to every TIFF-family vendor.

The pass walks every directory (pyramid levels, associated images, SubIFDs) and treats the
tags that carry people, places, dates and serials (DateTime, Artist, HostComputer,
DocumentName, Software, Model...) per ``generic_tiff.yaml``; of the rest it keeps only the
structural tags ``tiff_tags.yaml`` lists, and removes every other tag no vendor claims,
because nobody can say what it holds.
"""

from __future__ import annotations

from phiscrub.wsi.fields import field_list
from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import ASCII, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import GENERIC_TAGS, Ctx, kept_tags, tiff_format


def scrub_common(ctx: Ctx, owned: frozenset[int]) -> None:
    fields = field_list("generic_tiff")
    t, rw = ctx.t, ctx.rw
    kept = kept_tags()
    for ifd in t.ifds:
        for tag, e in sorted(ifd.entries.items()):
            if tag in owned:
                continue
            name = GENERIC_TAGS.get(tag)
            if name is None:
                if tag not in kept:
                    ctx.manifest.fields[f"tiff.{tag}"] = "remove"
                    rw.delete(ifd, tag)
                continue
            if tag in (34665, 34853):  # EXIF / GPS sub-directories: their values go too
                ctx.manifest.fields[f"tiff.{name}"] = "remove"
                off = t.uint(ifd, tag)
                if off:
                    rw.zero_orphan_ifd(off)
                rw.delete(ifd, tag)
                continue
            if e.type != ASCII:
                if fields.action(name) != "keep":
                    ctx.manifest.fields[f"tiff.{name}"] = "remove"
                    rw.delete(ifd, tag)
                continue
            ctx.rewrite_ascii(t, rw, ifd, tag, fields, name, f"tiff.{name}")


class GenericTiff:
    name = "generic_tiff"
    ext = "tiff"
    openslide_vendor = "generic-tiff"
    owned_tags: frozenset[int] = frozenset()
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [ifd for ifd in t.ifds if t.is_tiled(ifd) and not ifd.sub]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        """Stripped pages beside a pyramid are of unknown kind: they follow the label policy."""
        return {ifd.index: "label" for ifd in t.ifds if not t.is_tiled(ifd) and not ifd.sub}

    def metadata(self, ctx: Ctx) -> None:
        return None


VENDOR = GenericTiff()


def _is_generic_tiff(t: TiffSlide) -> bool:
    return t.is_tiled(t.ifds[0])


register_format(tiff_format("generic_tiff", VENDOR, _is_generic_tiff))

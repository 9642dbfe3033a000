"""OME-TIFF: the OME-XML in the first ImageDescription names experimenters, institutions,
instruments (serial numbers), images and acquisition dates; pyramid levels are SubIFDs.
OpenSlide reads such a file as a generic TIFF (its first level)."""

from __future__ import annotations

from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import T_DESCRIPTION, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format
from phiscrub.wsi.xmlmeta import parse, scrub_tree, serialize


class Ome:
    name = "ome"
    ext = "ome.tiff"
    openslide_vendor = "generic-tiff"
    owned_tags = frozenset({T_DESCRIPTION})
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [i for i in t.ifds if t.is_tiled(i)]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        return {i.index: "label" for i in t.ifds if not t.is_tiled(i) and not i.sub}

    def metadata(self, ctx: Ctx) -> None:
        t = ctx.t
        first = t.ifds[0]
        root = parse(t.ascii(first, T_DESCRIPTION) or "", "OME")
        scrub_tree(ctx, root, "ome")
        ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else None
        ctx.rw.set_ascii(first, T_DESCRIPTION, serialize(root, ns))
        for ifd in t.ifds[1:]:
            if T_DESCRIPTION in ifd.entries:
                ctx.see(t.ascii(ifd, T_DESCRIPTION) or "")
                ctx.rw.delete(ifd, T_DESCRIPTION)


VENDOR = Ome()


def _is_ome(t: TiffSlide) -> bool:
    d = t.ascii(t.ifds[0], T_DESCRIPTION) or ""
    return t.is_tiled(t.ifds[0]) and "<OME" in d and "openmicroscopy.org" in d


register_format(tiff_format("ome", VENDOR, _is_ome))

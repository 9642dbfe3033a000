"""Ventana BIF: the iScan element of the XMP packet (tag 700) in the first directory holds
barcode, scan date, user and serials; ImageDescription names the directories ("level=N",
"Label Image" / "Label_Image" (the slide overview: OpenSlide's macro), "Thumbnail")."""

from __future__ import annotations

from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import T_DESCRIPTION, UNDEFINED, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format
from phiscrub.wsi.xmlmeta import local, parse, scrub_tree, serialize

XMP = 700


class Ventana:
    name = "ventana"
    ext = "bif"
    openslide_vendor = "ventana"
    owned_tags = frozenset({XMP, T_DESCRIPTION})
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [i for i in t.ifds if (t.ascii(i, T_DESCRIPTION) or "").startswith("level=") and t.is_tiled(i)]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        out = {}
        for i in t.ifds:
            d = (t.ascii(i, T_DESCRIPTION) or "").strip()
            if d in ("Label Image", "Label_Image"):
                out[i.index] = "macro"
            elif d == "Thumbnail":
                out[i.index] = "thumbnail"
        return out

    def barcode(self, t: TiffSlide) -> str | None:
        for ifd in t.ifds:
            raw = t.blob(ifd, XMP)
            if raw is None:
                continue
            root = parse(raw.rstrip(b"\0").decode("utf-8", "replace"), "Ventana XMP")
            for el in root.iter():
                if local(el.tag) == "iScan":
                    return (el.get("BarCode1D") or el.get("BarCode2D") or "").strip() or None
        return None

    def metadata(self, ctx: Ctx) -> None:
        t = ctx.t
        for ifd in t.ifds:
            raw = t.blob(ifd, XMP)
            if raw is None:
                continue
            text = raw.rstrip(b"\0").decode("utf-8", "replace")
            root = parse(text, "Ventana XMP")
            scrub_tree(ctx, root, "ventana")
            new = serialize(root, None).encode()
            holder = ifd
            gone = {i for i, k in self.associated(t).items() if k == "macro"} if ctx.job.config.wsi.macro == "remove" else set()
            if ifd.index in gone:  # OpenSlide reads the XMP of the first directory: move it there
                holder = next(i for i in t.ifds if i.index not in gone and not i.sub)
            typ = UNDEFINED if ifd.entries[XMP].type == UNDEFINED else 1
            ctx.rw.set(holder, XMP, typ, len(new), new)
        for ifd in t.ifds:
            d = t.ascii(ifd, T_DESCRIPTION)
            if d is not None and not (d.startswith("level=") or d.strip() in ("Label Image", "Label_Image", "Thumbnail")):
                ctx.see(d)
                ctx.manifest.fields["ventana.ImageDescription"] = "remove"
                ctx.rw.delete(ifd, T_DESCRIPTION)


VENDOR = Ventana()


def _is_ventana(t: TiffSlide) -> bool:
    raw = t.blob(t.ifds[0], XMP) or b""
    return b"iScan" in raw


register_format(tiff_format("ventana", VENDOR, _is_ventana))

"""Leica SCN: a BigTIFF whose first ImageDescription is an XML document (collection, images,
their dimensions). PHI sits in the Base64 barcode, names, UUIDs, creation dates and the
device element; the macro is the image whose view covers the whole collection."""

from __future__ import annotations

import base64
import binascii

from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import T_DESCRIPTION, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format
from phiscrub.wsi.xmlmeta import local, parse, scrub_tree, serialize

NAMESPACES = ("http://www.leica-microsystems.com/scn/2010/10/01", "http://www.leica-microsystems.com/scn/2010/03/10")


def _layout(t: TiffSlide) -> tuple[list[int], list[int]]:
    """(main image IFDs, macro IFDs) from the XML."""
    root = parse(t.ascii(t.ifds[0], T_DESCRIPTION) or "", "Leica SCN")
    coll = next((e for e in root.iter() if local(e.tag) == "collection"), None)
    if coll is None:
        return [], []
    cx, cy = coll.get("sizeX"), coll.get("sizeY")
    main, macro = [], []
    for img in (e for e in coll if local(e.tag) == "image"):
        view = next((e for e in img if local(e.tag) == "view"), None)
        is_macro = view is not None and view.get("sizeX") == cx and view.get("sizeY") == cy \
            and view.get("offsetX") == "0" and view.get("offsetY") == "0"
        ifds = [int(d.get("ifd", "-1")) for d in img.iter() if local(d.tag) == "dimension" and d.get("z", "0") == "0"]
        (macro if is_macro else main).extend(i for i in ifds if 0 <= i < len(t.ifds))
    return main, macro


class Leica:
    name = "leica"
    ext = "scn"
    openslide_vendor = "leica"
    owned_tags = frozenset({T_DESCRIPTION})
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [t.ifds[i] for i in _layout(t)[0]]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        return {i: "macro" for i in _layout(t)[1]}

    def barcode(self, t: TiffSlide) -> str | None:
        root = parse(t.ascii(t.ifds[0], T_DESCRIPTION) or "", "Leica SCN")
        el = next((e for e in root.iter() if local(e.tag) == "barcode"), None)
        if el is None:
            return None
        return (el.text or "").strip() or None

    def metadata(self, ctx: Ctx) -> None:
        t = ctx.t
        first = t.ifds[0]
        root = parse(t.ascii(first, T_DESCRIPTION) or "", "Leica SCN")
        for el in root.iter():
            if local(el.tag) == "barcode" and el.text:
                raw = el.text.strip()
                ctx.see(raw)
                try:
                    ctx.see(base64.b64decode(raw, validate=True).decode("utf-8", "replace"))
                except (binascii.Error, ValueError):
                    pass
                ctx.manifest.fields["leica.barcode"] = "pseudonymize"
                el.text = base64.b64encode(ctx.job.keys.value_pseudonym(raw).encode()).decode()
        scrub_tree(ctx, root, "leica")
        holder = first
        if ctx.job.config.wsi.macro == "remove":
            holder = self._drop_macro(t, root)
        ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else None
        ctx.rw.set_ascii(holder, T_DESCRIPTION, serialize(root, ns))
        for ifd in t.ifds[1:]:  # other descriptions carry nothing OpenSlide needs
            if ifd is holder:
                continue
            if T_DESCRIPTION in ifd.entries:
                ctx.see(t.ascii(ifd, T_DESCRIPTION) or "")
                ctx.manifest.fields["leica.ImageDescription"] = "remove"
                ctx.rw.delete(ifd, T_DESCRIPTION)

    def _drop_macro(self, t: TiffSlide, root) -> Ifd:
        """The macro's directories are unlinked, so the XML loses its image element, the
        IFD numbers after them move down, and the XML moves to the new first directory."""
        _, macro = _layout(t)
        gone = set(macro)
        coll = next(e for e in root.iter() if local(e.tag) == "collection")
        for img in [e for e in coll if local(e.tag) == "image"]:
            ifds = {int(d.get("ifd", "-1")) for d in img.iter() if local(d.tag) == "dimension"}
            if ifds and ifds <= gone:
                coll.remove(img)
        for d in root.iter():
            if local(d.tag) == "dimension" and d.get("ifd", "").isdigit():
                n = int(d.get("ifd"))
                d.set("ifd", str(n - sum(1 for g in gone if g < n)))
        return next(i for i in t.ifds if i.index not in gone and not i.sub)


VENDOR = Leica()


def _is_leica(t: TiffSlide) -> bool:
    d = t.ascii(t.ifds[0], T_DESCRIPTION) or ""
    return t.is_tiled(t.ifds[0]) and "<scn" in d and any(ns in d for ns in NAMESPACES)


register_format(tiff_format("leica", VENDOR, _is_leica))

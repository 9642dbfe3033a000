"""Hamamatsu NDPI: private tags 65420-65480 in every directory, a key=value property map
(65449), barcodes (65468-65476) and 65477. The private tags are a kept-list
(``hamamatsu.yaml``): what it does not name is removed. The macro is the directory whose SourceLens
(65421) is -1 (the focus map, -2, is kept: it shows no label).

The 64-bit offset layout is handled by :mod:`phiscrub.wsi.tiff`.
"""

from __future__ import annotations

from phiscrub.wsi.fields import field_list
from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import ASCII, Ifd, Layout, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format

SOURCE_LENS, PROPERTY_MAP, BARCODE = 65421, 65449, 65468
NDPI_PRIVATE = frozenset(range(65420, 65481)) | {65324, 65325}


def _lens(t: TiffSlide, ifd: Ifd) -> float:
    v = t.numbers(ifd, SOURCE_LENS)
    return v[0] if v else 0.0


class Hamamatsu:
    name = "hamamatsu"
    ext = "ndpi"
    openslide_vendor = "hamamatsu"
    owned_tags = NDPI_PRIVATE
    label_end = "left"
    assoc_encoding = "jpeg"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [ifd for ifd in t.ifds if _lens(t, ifd) > 0]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        return {ifd.index: "macro" for ifd in t.ifds if _lens(t, ifd) == -1}

    def barcode(self, t: TiffSlide) -> str | None:
        return (t.ascii(t.ifds[0], BARCODE) or "").strip() or None

    def metadata(self, ctx: Ctx) -> None:
        fields = field_list("hamamatsu")
        t, rw = ctx.t, ctx.rw
        for ifd in t.ifds:
            for tag in sorted(set(ifd.entries) & NDPI_PRIVATE):
                if tag == PROPERTY_MAP:
                    self._property_map(ctx, ifd)
                    continue
                name = f"tag.{tag}"
                e = ifd.entries[tag]
                if fields.action(name) == "keep":
                    continue  # structure and optics (lens, offsets, focus, MCU starts)
                if e.type != ASCII:
                    ctx.manifest.fields[f"hamamatsu.{name}"] = "remove"
                    rw.delete(ifd, tag)
                    continue
                ctx.rewrite_ascii(t, rw, ifd, tag, fields, name, f"hamamatsu.{name}")

    def _property_map(self, ctx: Ctx, ifd: Ifd) -> None:
        fields = field_list("hamamatsu")
        text = ctx.t.ascii(ifd, PROPERTY_MAP) or ""
        out = []
        for line in text.replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            key, sep, value = line.partition("=")
            if not sep:
                ctx.manifest.fields["hamamatsu.map.<unnamed>"] = "remove"
                ctx.see(line)
                continue
            new = ctx.decide(fields, f"map.{key.strip()}", value, record=f"hamamatsu.map.{key.strip()}")
            if new is not None:
                out.append(f"{key}={new}")
        new_text = "\r\n".join(out) + ("\r\n" if out else "")
        if new_text != text:
            ctx.rw.set_ascii(ifd, PROPERTY_MAP, new_text)


VENDOR = Hamamatsu()


def _is_hamamatsu(t: TiffSlide) -> bool:
    return t.layout is Layout.NDPI


register_format(tiff_format("hamamatsu", VENDOR, _is_hamamatsu))

"""Aperio SVS (and GT450): ``key = value`` pairs in the ImageDescription of every directory.

The description reads ``Aperio Image Library vX\\r\\n<geometry>[;<older header>]|Key = Value|...``.
The older header after ';' records an earlier conversion (it can name the source file),
so it goes; each pair is treated per ``aperio.yaml``. Labels and macros are stripped
directories named on the description's second line; a GT450 writes none, so there they are
known by NewSubfileType (1: label, 9: macro), and a removed label that a kept macro follows
is blanked in place rather than unlinked (:meth:`Aperio.settle`).
"""

from __future__ import annotations

from phiscrub.wsi.fields import field_list
from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import T_DESCRIPTION, T_NEWSUBFILE, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format


def rewrite_description(ctx: Ctx, desc: str) -> str:
    fields = field_list("aperio")
    parts = desc.split("|")
    head = parts[0]
    if ";" in head:
        older = head.split(";", 1)[1]
        ctx.manifest.fields["aperio.<older header>"] = "remove"
        ctx.see(older)
        head = head.split(";", 1)[0]
    out = [head]
    for pair in parts[1:]:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            ctx.manifest.fields["aperio.<unnamed>"] = "remove"
            ctx.see(pair)
            continue
        new = ctx.decide(fields, key, value.strip())
        if new is not None:
            out.append(f"{key} = {new}")
    return "|".join(out)


class Aperio:
    name = "aperio"
    ext = "svs"
    openslide_vendor = "aperio"
    owned_tags = frozenset({T_DESCRIPTION})
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [ifd for ifd in t.ifds if t.is_tiled(ifd) and not ifd.sub]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        out = {}
        for ifd in t.ifds:
            if t.is_tiled(ifd) or ifd.sub:
                continue
            lines = (t.ascii(ifd, T_DESCRIPTION) or "").splitlines()
            word = lines[1].split(" ")[0].strip().lower() if len(lines) > 1 and lines[1].strip() else ""
            if word in ("label", "macro", "thumbnail"):
                out[ifd.index] = word
            elif ifd.index == 1:
                out[ifd.index] = "thumbnail"
            else:
                nst = t.uint(ifd, T_NEWSUBFILE)
                out[ifd.index] = {1: "label", 9: "macro"}.get(nst, "label")  # unknown: as a label
        return out

    def settle(self, t: TiffSlide, assoc: dict[int, str], actions: dict[int, str], notes: list[str]) -> None:
        """A GT450's label and macro carry no description, and some OpenSlide builds name
        them by directory position (label 5th, macro 6th after the pyramid) rather than by
        NewSubfileType: unlinking the label would move the macro into the label's place and
        such a reader would show the macro as 'label'. So a description-less associated image
        that the policy removes, with a kept one after it, is blanked in place instead (same
        size, black, every stored byte replaced): no byte of it survives, and every reader
        still names what follows correctly."""
        nameless = {i for i in assoc if not (t.ascii(t.ifds[i], T_DESCRIPTION) or "").strip()}
        for idx in sorted(nameless):
            if actions[idx] != "remove":
                continue
            if any(j > idx and actions[j] != "remove" for j in assoc):
                actions[idx] = "blank"
                notes.append(f"{assoc[idx]}: blanked in place, not unlinked, so the directories after it keep their positions")

    def barcode(self, t: TiffSlide) -> str | None:
        for pair in (t.ascii(t.ifds[0], T_DESCRIPTION) or "").split("|")[1:]:
            key, _, value = pair.partition("=")
            if key.strip() == "Barcode" and value.strip():
                return value.strip()
        return None

    def metadata(self, ctx: Ctx) -> None:
        for ifd in ctx.t.ifds:
            desc = ctx.t.ascii(ifd, T_DESCRIPTION)
            if desc is None:
                continue
            if not desc.startswith("Aperio"):
                ctx.manifest.fields["aperio.ImageDescription"] = "remove"
                ctx.see(desc)
                ctx.rw.delete(ifd, T_DESCRIPTION)
                continue
            new = rewrite_description(ctx, desc)
            if new != desc:
                ctx.rw.set_ascii(ifd, T_DESCRIPTION, new)


VENDOR = Aperio()


def _is_aperio(t: TiffSlide) -> bool:
    return t.is_tiled(t.ifds[0]) and (t.ascii(t.ifds[0], T_DESCRIPTION) or "").startswith("Aperio")


register_format(tiff_format("aperio", VENDOR, _is_aperio))

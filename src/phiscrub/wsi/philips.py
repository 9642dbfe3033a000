"""Philips TIFF (UFS export): the first ImageDescription is a DataObject XML of
``<Attribute Name="DICOM_...">`` / ``PIM_DP_...`` fields, and it carries the label and macro
as Base64 JPEG (PIM_DP_IMAGE_DATA in DPScannedImage objects of type LABELIMAGE/MACROIMAGE).
Fields follow ``philips.yaml`` by name; the two images follow the label/macro policy."""

from __future__ import annotations

import base64
import binascii

import cv2
import numpy as np

from phiscrub.wsi import labels
from phiscrub.wsi.fields import field_list
from phiscrub.wsi.registry import register_format
from phiscrub.wsi.tiff import T_DESCRIPTION, Ifd, TiffSlide
from phiscrub.wsi.tiffscrub import Ctx, tiff_format
from phiscrub.wsi.xmlmeta import drop, local, parse, serialize

KINDS = {"LABELIMAGE": "label", "MACROIMAGE": "macro"}
# The XML's structure, a kept-list: these elements with these attributes. Anything else
# (another element, an attribute, text between elements) is removed; the Attribute
# elements' values then follow philips.yaml by name.
STRUCTURE = {"DataObject": {"ObjectType"}, "Attribute": {"Name", "Group", "Element", "PMSVR"}, "Array": set()}


def _structure_only(ctx: Ctx, root, parents: dict) -> None:
    for el in list(root.iter()):
        tag = local(el.tag)
        if tag not in STRUCTURE:
            drop(ctx, el, parents, f"philips.<{tag}>")
            continue
        for attr in list(el.attrib):
            if local(attr) not in STRUCTURE[tag]:
                ctx.manifest.fields[f"philips.{tag}@{local(attr)}"] = "remove"
                ctx.see(el.attrib.pop(attr))
        if tag != "Attribute" and (el.text or "").strip():  # only Attribute elements hold values
            ctx.see(el.text or "")
            el.text = None
        if (el.tail or "").strip():
            ctx.see(el.tail or "")
            el.tail = None


def _name(el) -> str:
    return el.get("Name", "")


class Philips:
    name = "philips"
    ext = "tiff"
    openslide_vendor = "philips"
    owned_tags = frozenset({T_DESCRIPTION})
    label_end = "left"
    assoc_encoding = "raw"

    def levels(self, t: TiffSlide) -> list[Ifd]:
        return [i for i in t.ifds if t.is_tiled(i) and not i.sub]

    def associated(self, t: TiffSlide) -> dict[int, str]:
        out = {}
        for i in t.ifds:
            d = (t.ascii(i, T_DESCRIPTION) or "").strip().lower()
            if not t.is_tiled(i) and d.startswith(("label", "macro")):
                out[i.index] = "label" if d.startswith("label") else "macro"
        return out

    def _attribute(self, t: TiffSlide, name: str) -> str | None:
        root = parse(t.ascii(t.ifds[0], T_DESCRIPTION) or "", "Philips")
        for el in root.iter():
            if local(el.tag) == "Attribute" and _name(el) == name and len(el) == 0:
                return (el.text or "").strip().strip('"').strip() or None
        return None

    def patient(self, t: TiffSlide) -> str | None:
        """The DICOM patient the export names, in the DICOM path's identity form."""
        pid = self._attribute(t, "DICOM_PATIENT_ID")
        return f"id::{pid}" if pid else None

    def barcode(self, t: TiffSlide) -> str | None:
        return self._attribute(t, "PIM_DP_UFS_BARCODE")

    def metadata(self, ctx: Ctx) -> None:
        t = ctx.t
        first = t.ifds[0]
        root = parse(t.ascii(first, T_DESCRIPTION) or "", "Philips")
        self._images(ctx, root)
        fields = field_list("philips")
        parents = {c: p for p in root.iter() for c in p}
        _structure_only(ctx, root, parents)
        for el in list(root.iter()):
            if local(el.tag) != "Attribute" or el not in parents:
                continue
            name = _name(el)
            act = fields.action(name)
            if act == "keep":
                ctx.manifest.fields[f"philips.{name}"] = "keep"
                continue
            value = "".join(el.itertext())
            new = ctx.apply(act, value, f"philips.{name}") if len(el) == 0 else None
            if len(el):
                ctx.manifest.fields[f"philips.{name}"] = "remove"
                for v in el.itertext():
                    ctx.see(v)
            if new is None:
                parents[el].remove(el)
            else:
                el.text = new
        ctx.rw.set_ascii(first, T_DESCRIPTION, serialize(root, None))
        for ifd in t.ifds[1:]:
            d = t.ascii(ifd, T_DESCRIPTION)
            if d is not None and d.strip().lower() not in ("label", "macro") and not d.startswith("level="):
                ctx.see(d)
                ctx.rw.delete(ifd, T_DESCRIPTION)

    def _images(self, ctx: Ctx, root) -> None:
        cfg = ctx.job.config.wsi
        parents = {c: p for p in root.iter() for c in p}
        for obj in [e for e in root.iter() if local(e.tag) == "DataObject" and e.get("ObjectType") == "DPScannedImage"]:
            attrs = {_name(a): a for a in obj if local(a.tag) == "Attribute"}
            typ = (attrs.get("PIM_DP_IMAGE_TYPE").text or "").strip() if "PIM_DP_IMAGE_TYPE" in attrs else ""
            kind = KINDS.get(typ)
            data_el = attrs.get("PIM_DP_IMAGE_DATA")
            if kind is None or data_el is None:
                continue
            action = cfg.label if kind == "label" else cfg.macro
            if action == "remove":
                parents[obj].remove(obj)
                ctx.manifest.associated[kind] = "remove"
                continue
            try:
                raw = base64.b64decode((data_el.text or "").strip())
                img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            except (binascii.Error, ValueError):
                img = None
            if img is None:
                parents[obj].remove(obj)  # cannot read it: cannot keep it either
                ctx.manifest.associated[kind] = "remove"
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            act = "blank" if (action == "redact" and kind == "label") else action
            px = labels.new_pixels(kind, act, w, h, ctx.pseudonym, rgb, self.label_end)
            data, _, _ = labels.encode(px, "jpeg")
            data_el.text = base64.b64encode(data).decode()
            ctx.manifest.associated[kind] = act


VENDOR = Philips()


def _is_philips(t: TiffSlide) -> bool:
    first = t.ifds[0]
    return (t.ascii(first, 305) or "").startswith("Philips") and "DPUfsImport" in (t.ascii(first, T_DESCRIPTION) or "")


register_format(tiff_format("philips", VENDOR, _is_philips))

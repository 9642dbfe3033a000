"""Field-list driven scrub of vendor XML (Leica SCN, Ventana iScan XMP, OME).

Keys in the format's yaml: ``element@attribute`` for an attribute, ``element`` for an
element's text, with ``element@*`` / ``*@attribute`` as wildcards; what no key names follows
``default`` for attributes and is kept for text (structure: sizes, IFD numbers, spacings).
A format whose yaml has ``elements`` keeps only the elements listed there: any other
element goes with all it holds (a kept-list, for formats whose schema is known).
Parsing goes through defusedxml: slide XML is input from outside.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml.ElementTree import fromstring

from phiscrub.errors import CorruptFile
from phiscrub.wsi.fields import FieldList, field_list
from phiscrub.wsi.tiffscrub import Ctx


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse(text: str, what: str) -> ET.Element:
    try:
        return fromstring(text)
    except Exception:  # noqa: BLE001 - defusedxml raises several kinds
        raise CorruptFile(f"{what} XML does not parse") from None


def serialize(root: ET.Element, ns: str | None, decl: bool = True) -> str:
    if ns:
        ET.register_namespace("", ns)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="utf-8"?>' if decl else "") + body


def _attr_action(fields: FieldList, tag: str, attr: str) -> str:
    for key in (f"{tag}@{attr}", f"{tag}@*", f"*@{attr}"):
        if key in fields.fields:
            return fields.fields[key]
    return fields.default


def drop(ctx: Ctx, el: ET.Element, parents: dict, record: str) -> None:
    """Removes ``el`` and all it holds; every value in it joins the set the verifier looks for."""
    ctx.manifest.fields[record] = "remove"
    for sub in el.iter():
        for v in [*(sub.attrib.values()), sub.text or ""]:
            ctx.see(v)
    if el in parents:
        parents[el].remove(el)


def scrub_tree(ctx: Ctx, root: ET.Element, fmt: str) -> None:
    fields = field_list(fmt)
    parents = {c: p for p in root.iter() for c in p}
    for el in list(root.iter()):
        tag = local(el.tag)
        unlisted = fields.elements is not None and tag not in fields.elements
        if unlisted or fields.fields.get(f"{tag}/") == "remove":
            drop(ctx, el, parents, f"{fmt}.{tag}")
            continue
        if fields.elements is not None and (el.tail or "").strip():  # text between kept elements
            ctx.manifest.fields[f"{fmt}.<text>"] = "remove"
            ctx.see(el.tail or "")
            el.tail = None
        for attr in list(el.attrib):
            a = local(attr)
            act = _attr_action(fields, tag, a)
            new = ctx.apply(act, el.attrib[attr], f"{fmt}.{tag}@{a}")
            if new is None:
                del el.attrib[attr]
            else:
                el.attrib[attr] = new
        if el.text and el.text.strip() and tag in fields.fields:
            new = ctx.apply(fields.fields[tag], el.text, f"{fmt}.{tag}")
            el.text = new or ""

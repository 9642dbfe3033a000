"""The three XML annotation formats (Aperio ImageScope, Hamamatsu .ndpa, ASAP).

Parsed with defusedxml: no DTD, no entity expansion, no external fetch, so a hostile file
cannot make the parser read local files or explode in memory. ElementTree keeps attribute
values and element text as the exact strings of the source, which is what keeps
coordinates and measurements identical; comments and processing instructions are dropped
on parsing, and with them any PHI they held.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from phiscrub.errors import CorruptFile
from phiscrub.wsi.annotations import Cleaner, field_lists, remove_names

_ROOTS = {"aperio_xml": "Annotations", "ndpa": "annotations", "asap_xml": "ASAP_Annotations"}
_DECL = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_GEOMETRY = {"aperio_xml": "Vertex", "ndpa": "point", "asap_xml": "Coordinate"}


def _encoding(data: bytes) -> str:
    """The declared encoding, if Python knows it; UTF-8 otherwise (XML's default)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    m = _DECL.match(data.lstrip(b"\xef\xbb\xbf"))
    if m:
        name = m.group(1).decode("ascii").lower()
        try:
            "".encode(name)
            return name
        except LookupError:
            pass
    return "utf-8"


def _selectors(kind: str) -> tuple[set[tuple[str, str]], set[str]]:
    spec = field_lists()[kind]
    attrs = set()
    for sel in spec.get("clean", []):
        elem, _, attr = sel.partition("@")
        attrs.add((elem.lower(), attr.lower()))
    return attrs, {e.lower() for e in spec.get("clean_elements", [])}


def scrub_xml(data: bytes, kind: str, cleaner: Cleaner) -> tuple[bytes, dict]:
    try:
        root = fromstring(data, forbid_dtd=True)
    except (ET.ParseError, DefusedXmlException, ValueError):
        raise CorruptFile(f"annotation: not well-formed {kind} XML (or it declares a DTD/entities)") from None
    if root.tag != _ROOTS[kind]:
        raise CorruptFile(f"annotation: root element is not the one {kind} files have")
    clean_attrs, clean_elems = _selectors(kind)
    gone = remove_names()
    # first pass: take out authors, owners and timestamps, learning their values so the
    # free text that follows can be cleaned of them too
    _remove(root, gone, cleaner)
    _clean(root, clean_attrs, clean_elems, cleaner)
    geometry = sum(1 for _ in root.iter(_GEOMETRY[kind]))
    annotations = _count_annotations(root, kind)
    encoding = _encoding(data)
    out = ET.tostring(root, encoding=encoding, xml_declaration=True)
    if not out.endswith(b"\n"):
        out += "\n".encode(encoding) if encoding != "utf-16" else b"\n\x00"
    return out, cleaner.manifest(kind, annotations=annotations, points=geometry)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _remove(root: ET.Element, gone: frozenset[str], cleaner: Cleaner) -> None:
    for parent in root.iter():
        for child in list(parent):
            name = _local(child.tag)
            if name in gone:
                for text in child.itertext():
                    cleaner.learn(text)
                parent.remove(child)
                cleaner.removed(name)
        for attr, value in list(parent.attrib.items()):
            name = _local(attr)
            if name in gone and value != "":
                cleaner.learn(value)
                parent.attrib[attr] = ""  # emptied, not deleted: viewers expect what they wrote
                cleaner.removed(f"{_local(parent.tag)}@{name}")


def _clean(root: ET.Element, attrs: set[tuple[str, str]], elems: set[str], cleaner: Cleaner) -> None:
    for el in root.iter():
        tag = _local(el.tag)
        for attr, value in list(el.attrib.items()):
            name = _local(attr)
            if value and ((tag, name) in attrs or ("*", name) in attrs):
                el.attrib[attr] = cleaner.clean(f"{tag}@{name}", value)
        if tag in elems and len(el) == 0 and el.text:
            el.text = cleaner.clean(tag, el.text)


def _count_annotations(root: ET.Element, kind: str) -> int:
    if kind == "aperio_xml":
        return sum(1 for _ in root.iter("Region"))
    if kind == "ndpa":
        return sum(1 for _ in root.iter("ndpviewstate"))
    return sum(1 for _ in root.iter("Annotation"))

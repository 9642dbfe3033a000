"""PHI categories and counts of one item, derived from its PHI-free manifest.

Why from the manifest: the audit and the report must say what kind of identifying data
was found (names, IDs, dates, burned-in text...) without ever holding a value. The
manifest already lists the tags acted on and the pixel boxes with their reasons; the
category of a tag follows from its VR and keyword in the DICOM dictionary.
"""

from __future__ import annotations

from collections import Counter
from functools import cache

from pydicom.datadict import dictionary_has_tag, dictionary_keyword, dictionary_VR

_KEEP = {"K"}
_CONTACT = ("Address", "Telephone", "Email", "Country", "Region")
_PLACE = ("Institution", "Station", "Department", "Device", "Manufacturer", "Serial", "Location")
_ID_ENDS = ("ID", "IDs", "Number", "Numbers", "Locator", "Identifier", "Barcode", "Issuer")


@cache  # every item of a job names the same few hundred tags; the audit asks for each
def tag_category(tag: int) -> str:
    if (tag >> 16) & 1:
        return "private"
    if not dictionary_has_tag(tag):
        return "other"
    vr, kw = dictionary_VR(tag), dictionary_keyword(tag)
    if vr == "PN":
        return "person-name"
    if any(w in kw for w in _CONTACT):
        return "address-contact"
    if vr == "UI":
        return "uid"
    if vr in ("DA", "DT", "TM"):
        return "date-time"
    if vr == "AS" or kw.startswith("Patient") and kw[7:] in ("Sex", "Size", "Weight", "Age", "EthnicGroup"):
        return "patient-characteristic"
    if any(kw.endswith(e) for e in _ID_ENDS) or "Issuer" in kw:
        return "identifier"
    if any(w in kw for w in _PLACE):
        return "institution-device"
    if vr == "SQ":
        return "sequence"
    return "free-text"


def _tag_counts(entry: object) -> list[tuple[int, int]]:
    out = []
    for s in entry if isinstance(entry, list) else []:
        head, _, n = str(s).partition("x")
        try:
            out.append((int(head, 16), int(n) if n else 1))
        except ValueError:
            continue
    return out


def categorize(manifest: dict | None) -> dict[str, int]:
    """{category: count}, sorted by name; empty for an item with nothing found."""
    if not manifest:
        return {}
    c: Counter[str] = Counter()
    for action, entry in (manifest.get("actions") or {}).items():
        if action == "private_removed":
            c["private"] += int(entry) if isinstance(entry, int) else 0
            continue
        if action in _KEEP:
            continue
        for tag, n in _tag_counts(entry):
            c[tag_category(tag)] += n
    pixels = manifest.get("pixels") or {}
    for b in pixels.get("boxes") or []:
        c["burned-in-text:" + str(b.get("reason", "text")).split("-overlay")[0]] += 1
    # slides: metadata fields, associated images (label, macro) and tile redactions
    for _field, action in (manifest.get("fields") or {}).items():
        if action != "keep":
            c["slide-metadata"] += 1
    for kind, action in (manifest.get("associated") or {}).items():
        if action != "keep":
            c[f"slide-{kind}"] += 1
    c["burned-in-text:tile"] += len(manifest.get("tile_redactions") or [])
    # annotation files: fields removed (authors, timestamps, paths) and text spans replaced
    removed = manifest.get("removed")
    if isinstance(removed, dict):
        c["annotation-field"] += sum(n for n in removed.values() if isinstance(n, int))
    if isinstance(manifest.get("spans_replaced"), int):
        c["annotation-text"] += manifest["spans_replaced"]
    return {k: v for k, v in sorted(c.items()) if v}


def pixel_boxes(manifest: dict | None) -> list[dict]:
    """The redacted rectangles (stored-pixel coordinates, frame, reason); never text."""
    if not manifest:
        return []
    boxes = list((manifest.get("pixels") or {}).get("boxes") or [])
    boxes += list(manifest.get("tile_redactions") or [])
    return boxes


def pixel_fate(manifest: dict | None) -> str:
    """What clean_pixel_data did with one released image: 'scanned' when the pixel stage looked
    for text (or a static rule blanked a region), 'screened' when 'auto' found no sign of
    burned-in text in the header and its quick look found none in the pixels, 'left alone'
    when its mode was 'none' without a look ('auto' with the screen off, or the config said
    so), '' when there was nothing to judge (no pixels, option off)."""
    pixels = (manifest or {}).get("pixels") if isinstance(manifest, dict) else None
    if not isinstance(pixels, dict):
        return ""
    mode = pixels.get("mode")
    if mode in ("sensitive", "all") or pixels.get("boxes"):
        return "scanned"
    if pixels.get("screen") == "clear":
        return "screened"
    return "left alone" if mode == "none" else ""

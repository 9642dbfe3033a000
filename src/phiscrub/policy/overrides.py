"""Per-tag overrides: the user's rules, applied before the profile.

A selector names attributes by keyword, hex tag, VR, or private creator + element; these
play the role of Google Healthcare API DicomTagConfig action queries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import tag_for_keyword

from phiscrub.policy.actions import Action

_HEX = re.compile(r"^\(?([0-9A-Fa-f]{4})[, ]?([0-9A-Fa-f]{4})\)?$")
VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN",
    "UR", "US", "UT", "UV",
}


@dataclass(frozen=True)
class Override:
    action: Action
    tag: int | None = None
    vr: str | None = None
    private_creator: str | None = None
    private_element: int | None = None  # low byte of the element, 0x00-0xFF
    private_group: int | None = None

    def matches(self, tag: int, vr: str | None, creator: str | None) -> bool:
        if self.tag is not None:
            return tag == self.tag
        if self.vr is not None:
            return vr == self.vr
        if self.private_creator is not None:
            if creator is None or creator.strip() != self.private_creator:
                return False
            if self.private_group is not None and tag >> 16 != self.private_group:
                return False
            return self.private_element is None or (tag & 0xFF) == self.private_element
        return False

    def describe(self) -> str:
        if self.tag is not None:
            sel = f"{self.tag:08X}"
        elif self.vr is not None:
            sel = f"vr={self.vr}"
        else:
            sel = f"creator={self.private_creator}/{self.private_group}/{self.private_element}"
        return f"{sel}:{self.action.value}"


def parse_selector(sel: str | dict, action: Action, where: str) -> Override:
    """Parse one selector; errors name the config key at fault, never a data value."""
    if isinstance(sel, dict):
        if "private_creator" in sel:
            el = sel.get("element")
            grp = sel.get("group")
            return Override(
                action,
                private_creator=str(sel["private_creator"]).strip(),
                private_element=int(str(el), 16) & 0xFF if el is not None else None,
                private_group=int(str(grp), 16) if grp is not None else None,
            )
        if "vr" in sel:
            vr = str(sel["vr"]).upper()
            if vr not in VRS:
                raise ValueError(f"{where}: unknown VR {vr!r}")
            return Override(action, vr=vr)
        if "tag" in sel:
            return parse_selector(str(sel["tag"]), action, where)
        if "keyword" in sel:
            return parse_selector(str(sel["keyword"]), action, where)
        raise ValueError(f"{where}: a selector needs keyword, tag, vr or private_creator")
    text = str(sel).strip()
    m = _HEX.match(text)
    if m:
        return Override(action, tag=int(m.group(1) + m.group(2), 16))
    if text.upper() in VRS and text.isupper():
        return Override(action, vr=text)
    t = tag_for_keyword(text)
    if t is None:
        raise ValueError(f"{where}: {text!r} is neither a DICOM keyword, a hex tag nor a VR")
    return Override(action, tag=t)

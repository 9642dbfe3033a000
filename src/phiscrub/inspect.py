"""The dry run behind `phiscrub inspect`: the plan for each attribute, without values.

The action shown is what the header pass really does to that attribute, not the Annex E
code behind it: a C on a date is a shift (or nothing under full dates), a C on a time
keeps it. A reader deciding whether to trust the output needs the former. Pixel Data is
kept by the header pass but not left alone under clean_pixel_data: its row names what the
pixel stage will do with this very image (pixels.redact.effective_mode decides, as in a run).
"""

from __future__ import annotations

from pydicom.datadict import dictionary_description, dictionary_has_tag, keyword_for_tag

from phiscrub.dicom import header
from phiscrub.dicom.reader import read_instance
from phiscrub.dicom.un_vr import dictionary_vr
from phiscrub.dicom.values import TEXT_VRS
from phiscrub.policy import annex_e, date_net, identifier_net
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.config import Config
from phiscrub.policy.profile import Policy, Rule

NAMES = {"K": "keep", "X": "remove", "Z": "empty", "D": "dummy", "C": "clean", "U": "new UID",
         "shift_date": "shift"}
SOURCES = {date_net.SOURCE: "date safety net", identifier_net.SOURCE: "identifier safety net"}
PIXEL_DATA = 0x7FE00010
PIXEL_OPTION = "option:clean_pixel_data"


def plan_rows(data: bytes, config: Config) -> list[tuple[str, str, str, str, str]]:
    ds = read_instance(data)
    iod = annex_e.iod_for_sop_class(ds.get("SOPClassUID"))
    rows: list[tuple[str, str, str, str, str]] = []
    _rows(ds, config, iod, 0, rows)
    return rows


def _rows(ds, config: Config, iod, depth: int, rows: list) -> None:
    for tag, raw in list(ds._dict.items()):
        creator = header._private_creator(ds, tag) if tag.is_private and tag.element > 0xFF else None
        vr = raw.VR or dictionary_vr(tag)
        if creator and vr in (None, "UN"):  # as header.walk reads a kept private element
            vr = header.private_vr(tag, creator) or vr
        vr = vr or "UN"
        rule = config.policy.resolve(int(tag), vr, iod, depth > 0, creator)
        rule = header._patient_rule(rule, tag, depth > 0, _Ctx(config))
        if tag.is_private:
            name = f"private ({creator})" if creator else "private"
        else:
            name = dictionary_description(tag) if dictionary_has_tag(tag) else "unknown"
        action, why = shown_action(rule, vr, config.policy, int(tag)), SOURCES.get(rule.source, rule.source)
        if depth == 0 and rule.action is Action.KEEP and _pixel_stage_reads(int(tag), config):
            action, why = pixel_action(ds, config) if int(tag) == PIXEL_DATA else ("pixel stage (overlay OCR)", PIXEL_OPTION)
        elif depth == 0 and rule.action is Action.KEEP and int(tag) == PIXEL_DATA:
            why = "clean_pixel_data off: burned-in text stays"
        rows.append(("  " * depth + f"({tag.group:04X},{tag.element:04X})", name, vr, action, why))
        if vr == "SQ" and rule.action.value not in ("X", "Z"):
            for item in ds[tag].value or []:
                _rows(item, config, iod, depth + 1, rows)


def shown_action(rule: Rule, vr: str, policy: Policy, tag: int | None = None) -> str:
    """The name of what header._apply does with this rule on this VR (and, where the
    header pass looks at the tag itself, this tag)."""
    a = rule.action
    if vr in ("DA", "DT"):
        full = policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES)
        if a in (Action.CLEAN, Action.CLEAN_TEXT):
            return "keep" if full else "shift"
        if a in (Action.SHIFT_DATE, Action.PSEUDONYMIZE):
            return "shift"
        if a is Action.DUMMY and policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
            return "shift"
    elif vr == "TM" and a in (Action.CLEAN, Action.SHIFT_DATE):
        return "keep"  # whole-day offsets leave the time of day as it is
    if a is Action.SHIFT_DATE and vr != "SQ":
        return "dummy"  # a date shift of something that is no date: header._apply dummies it
    if a is Action.KEEP:
        if vr == "AS":
            return "keep (over 89: 090Y)"
        if vr == "UI" and rule.source.startswith("default") and not policy.has(Option.RETAIN_UIDS):
            kw = keyword_for_tag(tag) if tag is not None else ""
            if not header._CLASS_UID.search(kw or ""):
                return "new UID (unless a registered UID)"  # header._uid_safety_net
    if a is Action.CLEAN_TEXT and vr in TEXT_VRS:
        return "clean text"
    if a in (Action.CLEAN, Action.CLEAN_TEXT) and vr != "SQ":
        return _clean_shown(vr, tag)
    return NAMES.get(a.value, a.value)


def _clean_shown(vr: str, tag: int | None) -> str:
    """header._clean, by VR: a C is a different action on each."""
    if tag == header.TIMEZONE_OFFSET:
        return "keep if ±HHMM"
    if vr == "AS":
        return "keep (over 89: 090Y)"
    if vr == "PN":
        return "dummy"
    if vr in TEXT_VRS:
        return "clean text"
    if vr == "UI":
        return "new UID"
    return "keep"  # numbers, codes, binary: nothing in them for the text cleaner


def _pixel_stage_reads(tag: int, config: Config) -> bool:
    """Whether transform.py's pixel stage reads this kept element: Pixel Data under
    clean_pixel_data, an overlay's bits under clean_graphics too."""
    policy = config.policy
    if not policy.has(Option.CLEAN_PIXEL_DATA):
        return False
    if tag == PIXEL_DATA:
        return True
    group = tag >> 16
    return 0x6000 <= group <= 0x60FF and not group & 1 and tag & 0xFFFF == 0x3000 and policy.has(Option.CLEAN_GRAPHICS)


def pixel_action(ds, config: Config) -> tuple[str, str]:
    """(action, why) for this image's Pixel Data under clean_pixel_data: the mode the pixel
    stage picks for it (pixels.redact.clean_pixels), said before any OCR runs."""
    from phiscrub.pixels.redact import effective_mode
    from phiscrub.pixels.rules import matching_boxes

    cfg = config.pixels
    mode = effective_mode(ds, cfg)
    static = " + static rules" if matching_boxes(ds, cfg.rules) else ""
    setting = f"pixels.text_redaction: {cfg.text_redaction}"
    if mode != "none":
        shown = f"auto: {mode}" if cfg.text_redaction == "auto" else mode
        return f"pixel stage ({shown}{static})", setting
    if cfg.text_redaction == "auto" and cfg.screen:
        return f"pixel stage (auto: screen{static})", setting + "; no sign of text in the header"
    if static:
        return "pixel stage (static rules)", setting
    why = "no sign of text in the header, pixels.screen off" if cfg.text_redaction == "auto" else "no OCR"
    return "keep", f"{setting}: {why}"


class _Ctx:
    def __init__(self, config: Config) -> None:
        self.policy = config.policy

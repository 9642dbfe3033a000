"""Applies the policy to a dataset: every attribute, every sequence item, any depth.

Elements the policy keeps are never decoded (pydicom leaves them raw), which keeps a
header-only pass close to the cost of a plain read and write, and keeps pixel data and
the transfer syntax byte-for-byte.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from pydicom.datadict import keyword_for_tag, private_dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from phiscrub.dicom import dates
from phiscrub.dicom.text import PhiTerms, clean_text
from phiscrub.dicom.un_vr import dictionary_vr
from phiscrub.dicom.values import DUMMY, TEXT_VRS, fit
from phiscrub.dicom.wsi import keyed_identifier_tags
from phiscrub.keys import KeyRing
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.profile import Policy, Rule

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
TEXT_VALUE, SR_DATETIME, SR_DATE, SR_TIME = 0x0040A160, 0x0040A120, 0x0040A121, 0x0040A122
SR_VALUE_TAGS = frozenset({TEXT_VALUE, SR_DATETIME, SR_DATE, SR_TIME})
_KEEP_NEEDS_WORK = frozenset({"SQ", "AS", "UI", None})
TIMEZONE_OFFSET = 0x00080201
_TZ = re.compile(r"^[+-]\d{4}$")
_CLASS_UID = re.compile(r"(Class|TransferSyntax|CodingScheme|Creator|Mapping|Context)\w*UID$")


@dataclass
class InstanceContext:
    """What one instance's pass needs: the policy, the keys and the patient's identity."""

    policy: Policy
    keys: KeyRing
    iod: str | None
    identity: str
    date_offset: int
    terms: PhiTerms
    extra_patterns: tuple = ()
    counts: Counter = field(default_factory=Counter)
    uids_mapped: int = 0

    def count(self, tag: int, action: str) -> None:
        self.counts[(int(tag), action)] += 1


def walk(ds: Dataset, ctx: InstanceContext, nested: bool = False, mode: str | None = None) -> None:
    elems = ds._dict
    overlay_gone: dict[int, bool] = {}
    plan = ctx.policy.plan(ctx.iod, nested)
    resolve = ctx.policy.resolve
    drop_private = not ctx.policy.needs_private_creator
    for btag, raw in list(elems.items()):
        if btag not in elems:
            continue
        tag = int(btag)  # plain ints compare in C; pydicom's BaseTag compares in Python
        group = tag >> 16
        if drop_private and group & 1:
            del elems[btag]
            ctx.count(tag, "X")
            continue
        if 0x6000 <= group <= 0x60FF and not group & 1:
            # an overlay without its data is invalid: when Overlay Data goes, the group goes
            gone = overlay_gone.get(group)
            if gone is None:
                rule = resolve((group << 16) | 0x3000, "OW", ctx.iod, nested, None)
                gone = overlay_gone[group] = rule.action is Action.REMOVE
            if gone:
                del elems[btag]
                ctx.count(tag, "X")
                continue
        if plan is not None and not (tag >> 16) & 1:
            entry = plan.get(tag)
            if entry is None:
                dvr = dictionary_vr(tag)
                rule = _patient_rule(resolve(tag, dvr, ctx.iod, nested, None), tag, nested, ctx)
                entry = plan[tag] = (rule, dvr)
            rule, dvr = entry
            vr = raw.VR or dvr
            if rule.action is Action.KEEP and mode is None and vr not in _KEEP_NEEDS_WORK:
                continue  # the common case: a kept attribute stays raw, untouched
        else:
            vr = raw.VR or dictionary_vr(tag)
            creator = _private_creator(ds, tag) if (tag >> 16) % 2 == 1 and (tag & 0xFFFF) > 0xFF else None
            rule = resolve(tag, vr, ctx.iod, nested, creator)
            if creator and vr in (None, "UN") and rule.action is not Action.REMOVE:
                # implicit VR, or UN in explicit: a kept private element's VR comes from
                # its creator's dictionary, so a private date meets the date safety net
                pvr = private_vr(tag, creator)
                if pvr is not None:
                    vr = pvr
                    rule = resolve(tag, vr, ctx.iod, nested, creator)
            if not (tag >> 16) & 1:
                rule = _patient_rule(rule, tag, nested, ctx)
        if rule.action is Action.REMOVE:
            del elems[btag]
            ctx.count(tag, "X")
            continue
        _apply(ds, tag, vr, rule, ctx, nested, mode)
    _prune_private_creators(ds)


def private_vr(tag: int, creator: str) -> str | None:
    """The VR pydicom's private dictionary gives an element of a known creator, else None."""
    try:
        vr = private_dictionary_VR(tag, creator)
    except KeyError:
        return None
    return vr if len(vr) == 2 and vr != "UN" else None  # "US or SS" and the like: leave to pydicom


def _private_creator(ds: Dataset, tag: int) -> str | None:
    ctag = ((tag >> 16) << 16) | ((tag & 0xFF00) >> 8)
    if ctag not in ds._dict:
        return None
    val = ds[ctag].value
    return str(val).strip() if val is not None else None


def _patient_rule(rule: Rule, tag: int, nested: bool, ctx: InstanceContext) -> Rule:
    """Annex E allows a dummy in place of Z: the patient gets a keyed pseudonym instead,
    and so do the specimen and slide identifiers listed in wsi/dicom_wsi.yaml."""
    if rule.action is Action.DUMMY and tag in keyed_identifier_tags() and ctx.policy.pseudonymize_patient:
        return Rule(Action.PSEUDONYMIZE, rule.source + ":keyed")
    if (
        tag in (PATIENT_NAME, PATIENT_ID)
        and not nested
        and ctx.policy.pseudonymize_patient
        and rule.action in (Action.EMPTY, Action.DUMMY)
    ):
        return Rule(Action.PSEUDONYMIZE, rule.source + ":pseudonym")
    return rule


def _apply(
    ds: Dataset, tag: int, vr: str | None, rule: Rule, ctx: InstanceContext, nested: bool,
    mode: str | None,
) -> None:
    a = rule.action
    if a == Action.REMOVE:
        del ds[tag]
        ctx.count(tag, "X")
        return
    if vr == "SQ":
        _apply_sequence(ds, tag, a, ctx, mode)
        return
    if a == Action.KEEP:
        if mode and tag in SR_VALUE_TAGS:
            _sr_value(ds, tag, vr, ctx, mode)
        elif vr == "AS":
            _set(ds, tag, vr, _map_values(ds[tag].value, dates.generalise_age))
        elif vr == "UI" and rule.source.startswith("default") and not ctx.policy.has(Option.RETAIN_UIDS):
            _uid_safety_net(ds, tag, ctx)
        return
    if a == Action.EMPTY:
        _set(ds, tag, vr, None)
        ctx.count(tag, "Z")
    elif a == Action.DUMMY:
        _dummy(ds, tag, vr, ctx)
    elif a == Action.UID:
        _remap_uids(ds, tag, ctx)
    elif a == Action.CLEAN:
        _clean(ds, tag, vr, ctx)
    elif a == Action.PSEUDONYMIZE:
        _pseudonymize(ds, tag, vr, ctx, nested)
    elif a == Action.SHIFT_DATE:
        if vr in ("DA", "DT"):
            _shift(ds, tag, vr, ctx)
        elif vr != "TM":
            _dummy(ds, tag, vr, ctx)
    elif a == Action.CLEAN_TEXT:
        if vr in TEXT_VRS:
            _clean_text(ds, tag, vr, ctx)
        else:
            _clean(ds, tag, vr, ctx)


def _apply_sequence(ds: Dataset, tag: int, a: Action, ctx: InstanceContext, mode: str | None) -> None:
    if a == Action.EMPTY:
        ds[tag].value = Sequence()
        ctx.count(tag, "Z")
        return
    sub_mode = {Action.DUMMY: "dummy", Action.CLEAN: "clean", Action.CLEAN_TEXT: "clean"}.get(a, mode)
    if a == Action.DUMMY and mode == "clean":
        sub_mode = "clean"
    for item in ds[tag].value:
        walk(item, ctx, nested=True, mode=sub_mode)


def _set(ds: Dataset, tag: int, vr: str | None, value: object) -> None:
    if tag in ds._dict and vr is not None:
        ds[tag] = DataElement(tag, vr, value)
    else:
        ds[tag].value = value


def _map_values(value: object, fn) -> object:
    if value is None or value == "":
        return value
    if isinstance(value, (list, MultiValue)):
        return [fn(str(v)) for v in value]
    return fn(str(value))


def _dummy(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext) -> None:
    if vr in ("DA", "DT") and ctx.policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
        _shift(ds, tag, vr, ctx)
        return
    if vr == "UI":
        _remap_uids(ds, tag, ctx)
        return
    if vr in DUMMY:
        _set(ds, tag, vr, DUMMY[vr])
    else:
        _set(ds, tag, vr, None)  # binary and numeric VRs: an empty value carries nothing
    ctx.count(tag, "D")


def _remap_uids(ds: Dataset, tag: int, ctx: InstanceContext) -> None:
    value = ds[tag].value
    if value in (None, ""):
        return
    _set(ds, tag, "UI", _map_values(value, ctx.keys.uid))
    ctx.uids_mapped += 1
    ctx.count(tag, "U")


def _uid_safety_net(ds: Dataset, tag: int, ctx: InstanceContext) -> None:
    """A UI the table does not list keeps a registered UID (a class, a syntax) as it is;
    any other value is an instance UID that can carry dates or serials: remap it."""
    kw = keyword_for_tag(tag) or ""
    if _CLASS_UID.search(kw):
        return
    value = ds[tag].value
    vals = list(value) if isinstance(value, (list, MultiValue)) else [value]
    if all(v is None or str(v) in UID_dictionary or not str(v) for v in vals):
        return
    _remap_uids(ds, tag, ctx)


def _shift(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext) -> None:
    fn = dates.shift_da if vr == "DA" else dates.shift_dt
    value = ds[tag].value
    vals = list(value) if isinstance(value, (list, MultiValue)) else [value]
    out = []
    for v in vals:
        s = fn(str(v), ctx.date_offset) if v not in (None, "") else v
        if s is None:  # not a date we can shift: do not keep it
            _set(ds, tag, vr, None)
            ctx.count(tag, "Z")
            return
        out.append(s)
    _set(ds, tag, vr, out if len(out) > 1 else (out[0] if out else value))
    ctx.count(tag, "shift")


def _clean(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext) -> None:
    if tag == TIMEZONE_OFFSET:  # kept for the time of day; anything but "+HHMM" goes
        if not _TZ.match(str(ds[tag].value or "")):
            _set(ds, tag, vr, None)
            ctx.count(tag, "Z")
        return
    if vr in ("DA", "DT"):
        if ctx.policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
            return
        _shift(ds, tag, vr, ctx)
    elif vr == "TM":
        return
    elif vr == "AS":
        _set(ds, tag, vr, _map_values(ds[tag].value, dates.generalise_age))
    elif vr == "PN":
        _dummy(ds, tag, vr, ctx)
    elif vr in TEXT_VRS:
        _clean_text(ds, tag, vr, ctx)
    elif vr == "UI":
        _remap_uids(ds, tag, ctx)


def _clean_text(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext) -> None:
    value = ds[tag].value
    if value in (None, ""):
        return
    total = 0

    def one(v: str) -> str:
        nonlocal total
        out, n = clean_text(v, ctx.terms, ctx.policy.text_marker, ctx.extra_patterns)
        total += n
        return fit(out, vr or "LO")

    _set(ds, tag, vr, _map_values(value, one))
    ctx.count(tag, f"C:{total}")


def _pseudonymize(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext, nested: bool) -> None:
    value = ds[tag].value
    if tag == PATIENT_NAME and not nested:
        _set(ds, tag, "PN", ctx.keys.patient_name(ctx.identity))
    elif tag == PATIENT_ID and not nested:
        _set(ds, tag, "LO", ctx.keys.patient_id(ctx.identity))
    elif value in (None, ""):
        return
    elif vr == "UI":
        _remap_uids(ds, tag, ctx)
        return
    elif vr in ("DA", "DT"):
        _shift(ds, tag, vr, ctx)
        return
    elif vr == "PN":
        _set(ds, tag, vr, _map_values(value, lambda v: "PS^" + ctx.keys.token("name", v.upper())))
    elif vr in TEXT_VRS or vr in ("CS", "AE"):
        length = 8 if vr in ("SH", "CS", "AE") else 12
        _set(ds, tag, vr, _map_values(value, lambda v: ctx.keys.value_pseudonym(v, length)))
    else:
        _set(ds, tag, vr, None)
    ctx.count(tag, "P")


def _sr_value(ds: Dataset, tag: int, vr: str | None, ctx: InstanceContext, mode: str) -> None:
    """Content item values inside a D or C structured-content sequence."""
    if tag == TEXT_VALUE:
        if mode == "clean":
            _clean_text(ds, tag, vr, ctx)
        else:
            _set(ds, tag, vr, DUMMY["UT"])
            ctx.count(tag, "D")
        return
    if ctx.policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
        return
    if tag == SR_TIME:
        if not ctx.policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
            _set(ds, tag, vr, DUMMY["TM"])
            ctx.count(tag, "D")
        return
    if ctx.policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
        _shift(ds, tag, vr, ctx)
    else:
        _set(ds, tag, vr, DUMMY.get(vr or "DA", ""))
        ctx.count(tag, "D")


def _prune_private_creators(ds: Dataset) -> None:
    if not any((t >> 16) & 1 for t in ds._dict):
        return
    for tag in [t for t in ds._dict if (t >> 16) % 2 == 1 and 0x10 <= (t & 0xFFFF) <= 0xFF]:
        group, block = tag >> 16, tag & 0xFF
        lo, hi = (group << 16) | (block << 8), (group << 16) | (block << 8) | 0xFF
        if not any(lo <= t <= hi for t in ds._dict):
            del ds[tag]

"""The dry run behind `phiscrub inspect`: the plan for each attribute, without values.

The action shown is what the header pass really does to that attribute, not the Annex E
code behind it: a C on a date is a shift (or nothing under full dates), a C on a time
keeps it. A reader deciding whether to trust the output needs the former.
"""

from __future__ import annotations

from pydicom.datadict import dictionary_description, dictionary_has_tag

from phiscrub.dicom import header
from phiscrub.dicom.reader import read_instance
from phiscrub.dicom.un_vr import dictionary_vr
from phiscrub.policy import annex_e, date_net, identifier_net
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.config import Config
from phiscrub.policy.profile import Policy, Rule

NAMES = {"K": "keep", "X": "remove", "Z": "empty", "D": "dummy", "C": "clean", "U": "new UID",
         "shift_date": "shift"}
SOURCES = {date_net.SOURCE: "date safety net", identifier_net.SOURCE: "identifier safety net"}


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
        rows.append(("  " * depth + f"({tag.group:04X},{tag.element:04X})", name, vr,
                     shown_action(rule, vr, config.policy), SOURCES.get(rule.source, rule.source)))
        if vr == "SQ" and rule.action.value not in ("X", "Z"):
            for item in ds[tag].value or []:
                _rows(item, config, iod, depth + 1, rows)


def shown_action(rule: Rule, vr: str, policy: Policy) -> str:
    """The name of what header._apply does with this rule on this VR."""
    a = rule.action
    if vr in ("DA", "DT"):
        full = policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES)
        if a is Action.CLEAN:
            return "keep" if full else "shift"
        if a in (Action.SHIFT_DATE, Action.PSEUDONYMIZE):
            return "shift"
        if a is Action.DUMMY and policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
            return "shift"
    elif vr == "TM" and a in (Action.CLEAN, Action.SHIFT_DATE):
        return "keep"  # whole-day offsets leave the time of day as it is
    return NAMES.get(a.value, a.value)


class _Ctx:
    def __init__(self, config: Config) -> None:
        self.policy = config.policy

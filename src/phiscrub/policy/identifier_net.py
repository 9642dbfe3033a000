"""The identifier safety net: person names and IDs that Table E.1-1 does not list.

The table names most attributes that hold a name or an ID, not all: Secondary Reviewer
Name, Evaluator Name, Network ID, Device ID, Tracking ID, Owner ID and others are kept as
they are by "standard attributes the table does not list are kept". ``verify`` looks for
every PN value and every attribute whose keyword ends in ID, Number, Identifier, ...
(policy/data/verify_probe.yaml), so the transform must not keep what verify calls a leak:
both read the same list, and what the net covers follows the attribute's requirement type
in the IOD, as the date net does: D (dummy) for Type 1, Z for Type 2, X for the rest.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydicom.datadict import dictionary_has_tag, keyword_for_tag

from phiscrub.policy import annex_e
from phiscrub.policy.actions import Action

SOURCE = "identifier-safety-net"
DATA_FILE = "verify_probe.yaml"
_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "AE", "UR"})  # as pipeline/probe.py reads IDs
_BY_TYPE = {"1": Action.DUMMY, "2": Action.EMPTY}


@cache
def _rules() -> tuple[tuple[str, ...], frozenset[str]]:
    doc = yaml.safe_load(resources.files("phiscrub.policy.data").joinpath(DATA_FILE).read_text())
    return tuple(doc.get("id_suffixes") or ()), frozenset(doc.get("not_identifying") or ())


def covers(tag: int, vr: str | None) -> bool:
    """Whether the net decides for this standard attribute (a name, or an ID by keyword)."""
    if vr == "PN":
        return True
    if vr not in _TEXT_VRS or not dictionary_has_tag(tag):
        return False
    suffixes, exempt = _rules()
    kw = keyword_for_tag(tag) or ""
    return kw.endswith(suffixes) and kw not in exempt


def rule_action(tag: int, iod: str | None, nested: bool) -> Action:
    req = annex_e.requirement_type(tag, iod, nested)
    return _BY_TYPE.get(req[0], Action.REMOVE) if req else Action.REMOVE

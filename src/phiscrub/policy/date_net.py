"""The date safety net: a rule for the dates and times that nothing else resolves.

Table E.1-1 names only some of the standard's DA, DT and TM attributes. The others
(Instance Creation Date, Contribution DateTime, SR Observation DateTime, Date of Last
Calibration, ...) are dates of service all the same, and kept as they are they undo the
shift of the listed dates. The rules are data (data/date_safety_net.yaml), validated when
first loaded so that a bad edit fails on the first file, naming the key at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml
from pydicom.datadict import dictionary_has_tag, keyword_for_tag

from phiscrub.policy import annex_e
from phiscrub.policy.actions import Action, Option

SOURCE = "date-safety-net"
DATA_FILE = "date_safety_net.yaml"
_CODES = {"K": Action.KEEP, "shift": Action.SHIFT_DATE, "D": Action.DUMMY, "Z": Action.EMPTY, "X": Action.REMOVE}


@dataclass(frozen=True)
class Net:
    vrs: frozenset[str]
    options: tuple[tuple[Option, dict[str, Action]], ...]
    by_type: dict[str, Action]
    unknown_type: Action
    exempt: frozenset[int]


@cache
def net() -> Net:
    text = resources.files("phiscrub.policy.data").joinpath(DATA_FILE).read_text()
    return parse(yaml.safe_load(text))


def parse(doc: dict) -> Net:
    """Check every key once: an unknown option, VR, code or keyword stops the run here."""
    where = DATA_FILE
    vrs = frozenset(doc.get("vrs") or ())
    if not vrs or not vrs <= {"DA", "DT", "TM"}:
        raise ValueError(f"{where}: vrs must list DA, DT and/or TM")
    options = []
    for name, per_vr in (doc.get("options") or {}).items():
        try:
            opt = Option(name)
        except ValueError:
            raise ValueError(f"{where}: options.{name}: unknown option") from None
        if set(per_vr) != vrs:
            raise ValueError(f"{where}: options.{name}: give a code for each of {sorted(vrs)}")
        options.append((opt, {vr: _code(code, f"options.{name}.{vr}") for vr, code in per_vr.items()}))
    by_type = {str(k): _code(v, f"by_type.{k}") for k, v in (doc.get("by_type") or {}).items()}
    if set(by_type) != {"1", "2", "3"}:
        raise ValueError(f"{where}: by_type needs types 1, 2 and 3")
    exempt = set()
    for i, e in enumerate(doc.get("exempt") or ()):
        tag = int(str(e["tag"]), 16)
        if not dictionary_has_tag(tag) or keyword_for_tag(tag) != e.get("keyword"):
            raise ValueError(f"{where}: exempt[{i}]: tag and keyword do not match the dictionary")
        exempt.add(tag)
    return Net(vrs, tuple(options), by_type, _code(doc.get("unknown_type", "X"), "unknown_type"),
               frozenset(exempt))


def _code(code: object, key: str) -> Action:
    try:
        return _CODES[str(code)]
    except KeyError:
        raise ValueError(f"{DATA_FILE}: {key}: unknown code; use one of {sorted(_CODES)}") from None


def covers(tag: int, vr: str | None) -> bool:
    """Whether the net decides for this attribute (a date or time, not exempt)."""
    n = net()
    return vr in n.vrs and tag not in n.exempt


def rule_action(
    tag: int, vr: str, options: frozenset[Option], iod: str | None, nested: bool, private: bool = False
) -> Action:
    """The net's action, for an attribute ``covers`` accepted.

    A private date has no requirement type: without a date option it goes.
    """
    n = net()
    for opt, per_vr in n.options:
        if opt in options:
            return per_vr[vr]
    req = None if private else annex_e.requirement_type(tag, iod, nested)
    if req is None:
        return n.unknown_type
    return n.by_type.get(req[0], n.unknown_type)

"""The dry run behind `phiscrub inspect`: the plan for each attribute, without values."""

from __future__ import annotations

from pydicom.datadict import dictionary_description, dictionary_has_tag

from phiscrub.dicom import header
from phiscrub.dicom.reader import read_instance
from phiscrub.policy import annex_e
from phiscrub.policy.config import Config

NAMES = {"K": "keep", "X": "remove", "Z": "empty", "D": "dummy", "C": "clean", "U": "new UID"}


def plan_rows(data: bytes, config: Config) -> list[tuple[str, str, str, str, str]]:
    ds = read_instance(data)
    iod = annex_e.iod_for_sop_class(ds.get("SOPClassUID"))
    rows: list[tuple[str, str, str, str, str]] = []
    _rows(ds, config, iod, 0, rows)
    return rows


def _rows(ds, config: Config, iod, depth: int, rows: list) -> None:
    for tag, raw in list(ds._dict.items()):
        vr = raw.VR or header._dict_vr(tag) or "UN"
        creator = header._private_creator(ds, tag) if tag.is_private and tag.element > 0xFF else None
        rule = config.policy.resolve(int(tag), vr, iod, depth > 0, creator)
        rule = header._patient_rule(rule, tag, depth > 0, _Ctx(config))
        if tag.is_private:
            name = f"private ({creator})" if creator else "private"
        else:
            name = dictionary_description(tag) if dictionary_has_tag(tag) else "unknown"
        act = rule.action.value
        rows.append(("  " * depth + f"({tag.group:04X},{tag.element:04X})", name, vr,
                     NAMES.get(act, act), rule.source))
        if vr == "SQ" and rule.action.value not in ("X", "Z"):
            for item in ds[tag].value or []:
                _rows(item, config, iod, depth + 1, rows)


class _Ctx:
    def __init__(self, config: Config) -> None:
        self.policy = config.policy

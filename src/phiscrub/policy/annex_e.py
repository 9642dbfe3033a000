"""PS3.15 Table E.1-1 as data: loads annex_e.csv (made by tools/gen_annex_e.py).

Compound codes (Z/D, X/Z, X/D, X/Z/D, X/Z/U*) are resolved by the attribute's requirement
type in the instance's IOD, read from requirement_types.json (also generated from the
standard's module tables). Where the type is unknown, the most removing member wins.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from phiscrub.policy.actions import Option

OPTION_COLUMNS = tuple(o for o in Option if o not in (
    Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES))

# The standard's table, then rows it lacks for attributes that carry free text in
# whole-slide and annotation instances (see wsi/dicom_wsi.yaml).
TABLE_FILES = ("annex_e.csv", "wsi/dicom_supplement.csv")
# Every data file whose content changes what the header pass writes: the policy digest
# (and so the policy hash in the output and the state) covers them all, so an edit to one
# makes a rerun redo its outputs.
POLICY_FILES = TABLE_FILES + (
    "requirement_types.json", "date_net_types.json", "date_safety_net.yaml",
    "safe_private.csv", "minimal_keep_list.txt", "verify_probe.yaml",
)

# How much of the value each code keeps; used to pick the most conservative of several
# option codes that apply to the same attribute.
RETENTION = {"X": 0, "Z": 1, "D": 2, "U": 3, "C": 4, "K": 5}


@dataclass(frozen=True)
class Row:
    tag: str  # 8 hex digits, or a pattern with x, or "private"
    name: str
    in_std_iod: bool
    basic: str
    options: dict[Option, str]


@cache
def table() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    data = resources.files("phiscrub.policy.data")
    for name in TABLE_FILES:
        for r in csv.DictReader(data.joinpath(name).read_text().splitlines()):
            if r["tag"] in rows:
                continue  # a supplement only adds: the standard's own row wins
            opts = {o: r[o.value] for o in OPTION_COLUMNS if r.get(o.value)}
            rows[r["tag"]] = Row(r["tag"], r["name"], r["in_std_iod"] == "Y", r["basic"], opts)
    return rows


@cache
def exact_rows() -> dict[int, Row]:
    return {int(k, 16): v for k, v in table().items() if all(c in "0123456789abcdef" for c in k)}


@cache
def _types() -> dict:
    text = resources.files("phiscrub.policy.data").joinpath("requirement_types.json").read_text()
    return json.loads(text)


@cache
def _net_types() -> dict:
    """Types of the dates the table does not list (tools/gen_date_net_types.py): the date
    safety net needs them, and the table's own types file holds only listed attributes."""
    text = resources.files("phiscrub.policy.data").joinpath("date_net_types.json").read_text()
    return json.loads(text)


def iod_for_sop_class(sop_class_uid: str | None) -> str | None:
    if not sop_class_uid:
        return None
    return _types()["sop_class_to_iod"].get(str(sop_class_uid))


def requirement_type(tag: int, iod: str | None, nested: bool) -> str | None:
    key = f"{tag:08x}"
    for types in (_types(), _net_types()):  # the two files hold disjoint sets of tags
        if nested:
            found = types["nested_types"].get(key)
        elif iod is None:
            return None
        else:
            found = types["iod_types"].get(iod, {}).get(key)
        if found is not None:
            return found
    return None


def resolve_compound(code: str, req_type: str | None) -> str:
    """Pick one member of a compound code.

    Type 1 needs a value (D, or U for sequences of references), type 2 may be empty (Z),
    type 3 may go (X). With no known type, take the most removing member: when in doubt,
    remove.
    """
    members = [m.rstrip("*") for m in code.split("/")]
    if members == ["X"] and req_type in ("1", "2"):
        # removing a Type 1 or 2 attribute would leave an invalid IOD: PS3.15 E.1.1 asks
        # for a dummy or empty value instead
        return "D" if req_type == "1" else "Z"
    if len(members) == 1:
        return members[0]
    if req_type is None:
        return min(members, key=lambda m: RETENTION[m])
    wanted = {"1": ["D", "U", "Z"], "2": ["Z", "D", "U"], "3": ["X", "Z", "D", "U"]}[req_type[0]]
    for m in wanted:
        if m in members:
            return m
    return min(members, key=lambda m: RETENTION[m])

"""Static burned-in-text regions by header signature (the role of CTP's DicomPixelAnonymizer).

Rules are data (policy/data/pixel_rules.yaml plus the user's files); this module only
loads, validates and matches them against the original header.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import yaml
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from phiscrub.errors import ConfigError
from phiscrub.pixels.boxes import Box


@dataclass(frozen=True)
class Rule:
    name: str
    match: tuple
    regions: tuple[tuple[int, int, int, int], ...]


def _condition(c: dict, where: str) -> tuple:
    if "any" in c:
        return ("any", tuple(_condition(x, where) for x in c["any"]))
    kw = c.get("keyword")
    if "tag" in c:  # repeating groups (60xx) have no keyword
        kw = int(str(c["tag"]).replace(",", "").strip("()"), 16)
    elif not kw or tag_for_keyword(kw) is None:
        raise ConfigError(f"{where}: unknown keyword {kw!r}")
    if "contains" in c:
        return ("contains", kw, str(c["contains"]).lower())
    if "equals" in c:
        return ("equals", kw, str(c["equals"]).strip())
    raise ConfigError(f"{where}: a condition needs 'contains' or 'equals'")


def parse_rules(text: str, origin: str) -> tuple[Rule, ...]:
    doc = yaml.safe_load(text) or {}
    out = []
    for i, r in enumerate(doc.get("rules") or []):
        where = f"{origin} rules[{i}]"
        try:
            regions = tuple(tuple(int(v) for v in reg) for reg in r["regions"])
            if any(len(reg) != 4 for reg in regions):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{where}: regions must be a list of [x, y, w, h]") from None
        out.append(Rule(str(r.get("name", f"rule {i}")), tuple(_condition(c, where) for c in r.get("match") or []), regions))
    return tuple(out)


@cache
def builtin_rules() -> tuple[Rule, ...]:
    text = resources.files("phiscrub.policy.data").joinpath("pixel_rules.yaml").read_text()
    return parse_rules(text, "pixel_rules.yaml")


@cache
def user_rules(path: Path) -> tuple[Rule, ...]:
    return parse_rules(path.read_text(), path.name)


def _value(ds: Dataset, kw: str | int) -> str:
    v = ds.get(kw)
    if isinstance(kw, int) and v is not None:
        v = v.value
    if v is None:
        return ""
    if isinstance(v, (list, MultiValue)):
        return "\\".join(str(x) for x in v)
    return str(v)


def _holds(ds: Dataset, cond: tuple) -> bool:
    if cond[0] == "any":
        return any(_holds(ds, c) for c in cond[1])
    op, kw, want = cond
    got = _value(ds, kw)
    return want in got.lower() if op == "contains" else got.strip() == want


def matching_boxes(ds: Dataset, extra: tuple[Path, ...] = ()) -> list[Box]:
    rules = list(builtin_rules())
    for p in extra:
        rules.extend(user_rules(p))
    boxes = []
    for r in rules:
        if r.match and all(_holds(ds, c) for c in r.match):
            boxes.extend(Box(x, y, w, h, None, "static-rule") for x, y, w, h in r.regions)
    return boxes

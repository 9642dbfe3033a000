"""Generate ``date_net_types.json``: requirement types of the dates Table E.1-1 does not list.

Why a script: the date safety net (policy/data/date_safety_net.yaml) treats a DA, DT or TM
attribute that the Annex E table does not name by its requirement type in the IOD: a
dummy for Type 1, empty for Type 2, removed otherwise, so an instance stays valid where
the standard needs a value. ``requirement_types.json`` holds types only for attributes the
table lists; this adds the others, from the same machine-readable copy of PS3.3 (the
innolitics ``dicom-standard`` project; its PyPI wheel ships an edition under
``*.data/data/standard/``). Functional group macros (``ciod_to_fg_macros.json``) count as
nested: their attributes live inside the functional group sequences.

Usage::

    python tools/gen_date_net_types.py STANDARD_DIR
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

from pydicom._dicom_dict import DicomDictionary

DATA = Path(__file__).resolve().parents[1] / "src" / "phiscrub" / "policy" / "data"
TYPES = {"1", "1C", "2", "2C", "3"}


def unlisted_dates() -> set[str]:
    """DA, DT and TM tags of pydicom's dictionary that annex_e.csv has no exact row for."""
    listed = {r["tag"] for r in csv.DictReader((DATA / "annex_e.csv").read_text().splitlines())}
    return {f"{t:08x}" for t, entry in DicomDictionary.items()
            if entry[0] in ("DA", "DT", "TM") and f"{t:08x}" not in listed}


def _tag(text: str) -> str | None:
    m = re.match(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)", text.strip())
    return (m.group(1) + m.group(2)).lower() if m else None


def build(std: Path) -> dict:
    wanted = unlisted_dates()
    m2a = json.loads((std / "module_to_attributes.json").read_text())
    c2m = json.loads((std / "ciod_to_modules.json").read_text())
    fg = json.loads((std / "ciod_to_fg_macros.json").read_text())
    macros = json.loads((std / "macro_to_attributes.json").read_text())
    fg_ids = {f["macroId"] for f in fg}
    per_module: dict[str, dict[str, str]] = {}
    nested: dict[str, set[str]] = {}
    for a in m2a:
        tag, typ = _tag(a["tag"]), str(a.get("type") or "")
        if tag not in wanted or typ not in TYPES:
            continue
        if a["path"].count(":") == 1:
            per_module.setdefault(a["moduleId"], {})[tag] = typ
        else:
            nested.setdefault(tag, set()).add(typ)
    for a in macros:
        tag, typ = _tag(a["tag"]), str(a.get("type") or "")
        if a["macroId"] in fg_ids and tag in wanted and typ in TYPES:
            nested.setdefault(tag, set()).add(typ)
    per_ciod: dict[str, dict[str, str]] = {}
    for cm in c2m:
        for tag, typ in per_module.get(cm["moduleId"], {}).items():
            cur = per_ciod.setdefault(cm["ciodId"], {}).get(tag)
            if cur is None or typ < cur:  # "1" < "1C" < "2" < "2C" < "3": strictest wins
                per_ciod[cm["ciodId"]][tag] = typ
    return {
        "iod_types": {k: dict(sorted(v.items())) for k, v in sorted(per_ciod.items())},
        "nested_types": {t: min(v) for t, v in sorted(nested.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("standard", type=Path, help="folder with module_to_attributes.json etc.")
    args = ap.parse_args()
    doc = build(args.standard)
    (DATA / "date_net_types.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"date_net_types.json: {len(doc['iod_types'])} IODs, {len(doc['nested_types'])} nested tags")


if __name__ == "__main__":
    main()

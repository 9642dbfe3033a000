"""Generate phiscrub's Annex E data files from a machine-readable copy of the standard.

Why a script: the standard's tables are data, and data typed by hand drifts. This turns
the JSON extraction of PS3.15 Table E.1-1 published by the innolitics ``dicom-standard``
project (``standard/confidentiality_profile_attributes.json``; the PyPI wheel
``dicom-standard`` ships an older edition under ``*.data/data/standard/``) into
``src/phiscrub/policy/data/annex_e.csv``.

With ``--modules`` (the same project's ``module_to_attributes.json``,
``ciod_to_modules.json`` and ``sops.json`` folder) it also writes
``requirement_types.json``: for every attribute whose Basic Profile code is compound
(Z/D, X/Z, X/D, X/Z/D, X/Z/U*) or X, its requirement type in each IOD, so the policy can
pick the member of a compound code the standard intends, and keep an IOD valid where a
plain X would remove a Type 1 or 2 attribute (E.1.1: replace instead of remove).

Usage::

    python tools/gen_annex_e.py TABLE.json [--modules DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

OPTION_COLUMNS = {
    "rtnSafePrivOpt": "retain_safe_private",
    "rtnUIDsOpt": "retain_uids",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "cleanDescOpt": "clean_descriptors",
    "cleanStructContOpt": "clean_structured_content",
    "cleanGraphOpt": "clean_graphics",
}
DATA = Path(__file__).resolve().parents[1] / "src" / "phiscrub" / "policy" / "data"


def normalise_tag(tag: str) -> str:
    """(0008,0050) -> 00080050; (50XX,XXXX) -> 50xxxxxx; the private row -> 'private'."""
    if "ODD" in tag.upper():
        return "private"
    m = re.match(r"\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)", tag.strip())
    if not m:
        raise ValueError(f"unparseable tag {tag!r}")
    return (m.group(1) + m.group(2)).lower()


def clean_name(name: str) -> str:
    """Table cells carry footnote pointers and line breaks; keep the attribute name only."""
    name = re.sub(r"\(see Note \d+\)", "", name)
    return " ".join(name.split())


def clean_code(code: str) -> str:
    return code.strip().replace(" ", "")


def write_table(rows: list[dict], out: Path) -> list[str]:
    compound = []
    seen: set[str] = set()
    with out.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["tag", "name", "in_std_iod", "basic", *OPTION_COLUMNS.values()])
        for r in sorted(rows, key=lambda r: normalise_tag(r["tag"])):
            tag = normalise_tag(r["tag"])
            if tag in seen:
                continue
            seen.add(tag)
            basic = clean_code(r["basicProfile"])
            if "/" in basic or basic == "X":
                compound.append(tag)
            w.writerow(
                [tag, clean_name(r["name"]), r.get("stdCompIOD", ""), basic]
                + [clean_code(r.get(k, "")) for k in OPTION_COLUMNS]
            )
    return compound


def write_types(mod_dir: Path, tags: list[str], out: Path) -> None:
    wanted = {t for t in tags if "x" not in t}
    m2a = json.loads((mod_dir / "module_to_attributes.json").read_text())
    c2m = json.loads((mod_dir / "ciod_to_modules.json").read_text())
    sops = json.loads((mod_dir / "sops.json").read_text())
    per_module: dict[str, dict[str, str]] = {}
    nested: dict[str, set[str]] = {}
    for a in m2a:
        tag = normalise_tag(a["tag"])
        if tag not in wanted:
            continue
        typ = str(a.get("type") or "")
        if typ not in {"1", "1C", "2", "2C", "3"}:
            continue
        depth = a["path"].count(":")
        if depth == 1:
            per_module.setdefault(a["moduleId"], {})[tag] = typ
        else:
            nested.setdefault(tag, set()).add(typ)
    per_ciod: dict[str, dict[str, str]] = {}
    for cm in c2m:
        for tag, typ in per_module.get(cm["moduleId"], {}).items():
            cur = per_ciod.setdefault(cm["ciodId"], {}).get(tag)
            if cur is None or typ < cur:  # "1" < "1C" < "2" < "2C" < "3": strictest wins
                per_ciod[cm["ciodId"]][tag] = typ
    ciod_names = {}
    for s in sops:
        ciod_id = re.sub(r"[^a-z0-9]+", "-", s["ciod"].lower()).strip("-")
        ciod_names[s["id"]] = ciod_id
    strictest_nested = {t: min(v) for t, v in nested.items()}
    out.write_text(
        json.dumps(
            {
                "sop_class_to_iod": dict(sorted(ciod_names.items())),
                "iod_types": {k: dict(sorted(v.items())) for k, v in sorted(per_ciod.items())},
                "nested_types": dict(sorted(strictest_nested.items())),
            },
            indent=1,
            sort_keys=False,
        )
        + "\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", type=Path)
    ap.add_argument("--modules", type=Path)
    args = ap.parse_args()
    rows = json.loads(args.table.read_text())
    compound = write_table(rows, DATA / "annex_e.csv")
    print(f"annex_e.csv: {len(rows)} rows, {len(compound)} compound or X codes")
    if args.modules:
        write_types(args.modules, compound, DATA / "requirement_types.json")
        print("requirement_types.json written")


if __name__ == "__main__":
    main()

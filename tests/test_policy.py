"""The Annex E table as data, compound-code resolution, options, overrides, configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phiscrub.errors import ConfigError
from phiscrub.policy import Action, Option, annex_e, load_config
from phiscrub.policy.profile import Policy

PN, PID, INST, ACQ_DATE, DEV_SERIAL = 0x00100010, 0x00100020, 0x00080080, 0x00080022, 0x00181000


def test_table_is_complete_and_well_formed() -> None:
    rows = annex_e.table()
    assert len(rows) >= 450
    codes = {r.basic for r in rows.values()}
    assert {"D", "Z", "X", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"} <= codes
    used = {o for r in rows.values() for o in r.options}
    assert len(used) == 10  # every option column of Table E.1-1
    assert {"50xxxxxx", "60xx3000", "60xx4000", "private"} <= set(rows)


@pytest.mark.parametrize(
    ("code", "req_type", "expected"),
    [("X/Z", "3", "X"), ("X/Z", "2", "Z"), ("X/Z/D", "1", "D"), ("Z/D", "1C", "D"),
     ("X/D", "2", "D"), ("X/Z/U*", "1", "U"), ("X/Z/D", None, "X"), ("Z/D", None, "Z")],
)
def test_compound_codes_follow_requirement_type(code: str, req_type, expected: str) -> None:
    assert annex_e.resolve_compound(code, req_type) == expected


def test_compound_resolution_uses_the_iod() -> None:
    p = Policy(options=frozenset())
    # Device Serial Number is X/Z/D: type 1 in the enhanced ones, type 3 in CT Image
    ct = p.resolve(DEV_SERIAL, "LO", annex_e.iod_for_sop_class("1.2.840.10008.5.1.4.1.1.2"))
    assert ct.action == Action.REMOVE
    sr = annex_e.requirement_type(DEV_SERIAL, "acquisition-context-sr", False)
    assert sr == "1"


@pytest.mark.parametrize(
    ("option", "tag", "expected"),
    [
        (None, INST, Action.REMOVE),
        (Option.RETAIN_INSTITUTION_IDENTITY, INST, Action.KEEP),
        (None, ACQ_DATE, Action.REMOVE),
        (Option.RETAIN_LONGITUDINAL_FULL_DATES, ACQ_DATE, Action.KEEP),
        (Option.RETAIN_LONGITUDINAL_MODIFIED_DATES, ACQ_DATE, Action.CLEAN),
        (Option.RETAIN_DEVICE_IDENTITY, DEV_SERIAL, Action.KEEP),
        (None, 0x0020000D, Action.UID),
        (Option.RETAIN_UIDS, 0x0020000D, Action.KEEP),
        (None, 0x00101010, Action.REMOVE),
        (Option.RETAIN_PATIENT_CHARACTERISTICS, 0x00101010, Action.KEEP),
        (None, 0x00081030, Action.REMOVE),
        (Option.CLEAN_DESCRIPTORS, 0x00081030, Action.CLEAN),
        (Option.CLEAN_STRUCTURED_CONTENT, 0x0040A730, Action.CLEAN),
        (Option.CLEAN_GRAPHICS, 0x60004000, Action.CLEAN),
        (None, 0x00280030, Action.KEEP),  # not in the table: kept, as the standard intends
        (None, 0x00291010, Action.REMOVE),  # private
        (None, 0x00080000 | 0x7777, Action.REMOVE),  # unknown to the dictionary
    ],
)
def test_option_changes_action(option, tag: int, expected: Action) -> None:
    p = Policy(options=frozenset({option}) if option else frozenset())
    assert p.resolve(tag, None, "ct-image").action == expected


def test_safe_private_is_by_creator() -> None:
    p = Policy(options=frozenset({Option.RETAIN_SAFE_PRIVATE}))
    assert p.resolve(0x0019100C, "IS", None, False, "SIEMENS MR HEADER").action == Action.KEEP
    assert p.resolve(0x0019100C, "IS", None, False, "SOMEONE ELSE").action == Action.REMOVE
    assert p.resolve(0x00191010, "LO", None, False, "SIEMENS MR HEADER").action == Action.REMOVE


def test_overrides_come_first(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "options: []\n"
        "tags:\n"
        "  - {select: InstitutionName, action: keep}\n"
        "  - {select: '(0008,1030)', action: clean_text}\n"
        "  - {select: {vr: DA}, action: shift_date}\n"
        "  - {select: {private_creator: ACME, element: '10'}, action: pseudonymize}\n"
    )
    p = load_config(cfg).policy
    assert p.resolve(INST, "LO").action == Action.KEEP
    assert p.resolve(0x00081030, "LO").action == Action.CLEAN_TEXT
    assert p.resolve(0x00100030, "DA").action == Action.SHIFT_DATE
    assert p.resolve(0x00291010, "LO", None, False, "ACME").action == Action.PSEUDONYMIZE
    assert p.resolve(0x00291011, "LO", None, False, "ACME").action == Action.REMOVE


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("profile: strict\n", "profile"),
        ("options: [retain_longitudinal_full_dates, retain_longitudinal_modified_dates]\n", "options"),
        ("tags:\n  - {select: NoSuchKeyword, action: keep}\n", "tags[0]"),
        ("tags:\n  - {select: PatientName, action: obliterate}\n", "tags[0]"),
        ("date_shift: {min_days: 10, max_days: 1}\n", "date_shift"),
        ("colour: blue\n", "colour"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(cfg)


def test_google_deidentify_config(tmp_path: Path) -> None:
    doc = {
        "dicom": {"filterProfile": "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE",
                  "keepList": {"tags": ["PatientSex"]}, "removeList": {"tags": ["Modality"]}},
        "dicomTagConfig": {
            "options": {"cleanDescriptors": {}, "primaryIds": "KEEP"},
            "actions": [{"queries": ["00100030"], "cleanTextTag": {}},
                        {"queries": ["StudyDescription"], "resetTag": {}}],
        },
    }
    cfg = tmp_path / "g.json"
    cfg.write_text(json.dumps(doc))
    p = load_config(cfg).policy
    assert p.profile == "basic"
    assert Option.CLEAN_DESCRIPTORS in p.options and Option.RETAIN_UIDS in p.options
    assert p.resolve(0x00100040, "CS").action == Action.KEEP
    assert p.resolve(0x00080060, "CS").action == Action.REMOVE
    assert p.resolve(0x00100030, "DA").action == Action.CLEAN_TEXT
    assert p.resolve(0x00081030, "LO").action == Action.DUMMY
    minimal = tmp_path / "m.json"
    minimal.write_text(json.dumps({"dicom": {"filterProfile": "MINIMAL_KEEP_LIST_PROFILE"}}))
    pm = load_config(minimal).policy
    assert pm.resolve(0x00280010, "US").action == Action.KEEP
    assert pm.resolve(0x00080070, "LO").action == Action.REMOVE
    assert pm.resolve(0x0020000D, "UI").action == Action.UID


def test_policy_digest_changes_with_options() -> None:
    a = Policy(options=frozenset()).digest()
    b = Policy(options=frozenset({Option.CLEAN_PIXEL_DATA})).digest()
    assert a != b and len(a) == 64

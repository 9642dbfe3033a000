"""The identifier safety net: names and IDs that Table E.1-1 does not list do not survive,
since verify (which reads the same list) would call them leaks."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from phiscrub.inspect import plan_rows
from phiscrub.policy import load_config

from ..conftest import TEST_FILES, scan_tree


def _planted(path: Path) -> list[str]:
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.add_new(0x00181003, "LO", "DEVQZ77341")  # Device ID
    ds.add_new(0x00620020, "LO", "TRKQZ55120")  # Tracking ID
    ds.add_new(0x00140104, "PN", "Quillfeather^Ambrose")  # Secondary Reviewer Name
    ds.add_new(0x00081000, "AE", "NETQZ8812")  # Network ID (retired), as deid-data's ultrasounds hold it
    ds.save_as(path, enforce_file_format=True)
    return ["DEVQZ77341", "TRKQZ55120", "Quillfeather", "Ambrose", "NETQZ8812"]


def test_unlisted_names_and_ids_are_removed(tmp_path: Path, cli) -> None:
    (tmp_path / "in").mkdir()
    needles = _planted(tmp_path / "in" / "a.dcm")
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    assert scan_tree(tmp_path / "out", needles) == {}
    assert cli("verify", tmp_path / "in", tmp_path / "out").exit_code == 0


def test_inspect_names_the_identifier_net(tmp_path: Path) -> None:
    _planted(tmp_path / "a.dcm")
    rows = {r[0].strip(): r for r in plan_rows((tmp_path / "a.dcm").read_bytes(), load_config(None))}
    for tag in ("(0018,1003)", "(0062,0020)", "(0014,0104)", "(0008,1000)"):
        assert rows[tag][4] == "identifier safety net" and rows[tag][3] in ("remove", "empty", "dummy")

"""inspect, demo, the audit chain and what the state folder may hold."""

from __future__ import annotations

import json
from pathlib import Path

from phiscrub.demo import make_study
from phiscrub.pipeline.audit import verify_chain

from .conftest import TEST_FILES


def test_inspect_shows_names_and_actions_never_values(cli, tmp_path: Path) -> None:
    _, paths = make_study(tmp_path / "in", n_ct=1, n_mr=0)
    res = cli("inspect", paths[0])
    assert res.exit_code == 0
    out = res.output
    assert "Patient's Name" in out and "Institution Name" in out and "remove" in out
    assert "private (ACME PRIVATE)" in out
    for value in ("Davidson", "Douglas", "MRN4471923", "20210304", "Whitmore", "Elsewhere"):
        assert value not in out


def test_demo_runs_and_finds_no_leak(cli, tmp_path: Path) -> None:
    res = cli("demo", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    assert ": 0 found" in res.output
    assert list((tmp_path / "demo" / "output").rglob("*.dcm"))


def test_audit_chain_holds_no_paths_or_values(cli, tmp_path: Path) -> None:
    src = tmp_path / "CT_for_Douglas_Davidson"
    make_study(src, n_ct=1, n_mr=1)
    (src / "junk.txt").write_text("nope")
    res = cli("deidentify", src, tmp_path / "out", "-q")
    assert res.exit_code == 1
    state = tmp_path / "out" / ".phiscrub"
    ok, n = verify_chain(state / "audit.jsonl")
    assert ok and n >= 5
    blob = b"".join(p.read_bytes() for p in state.iterdir() if p.is_file())
    for needle in ("Douglas", "Davidson", "junk.txt", str(tmp_path)):
        assert needle.encode() not in blob
    recs = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    items = [r for r in recs if r["event"] == "item"]
    assert {r["status"] for r in items} == {"done", "quarantined"}
    assert all(len(r["item"]) == 16 for r in items)  # keyed hash of the source path
    # tampering shows
    lines = (state / "audit.jsonl").read_text().splitlines()
    first_item = next(i for i, x in enumerate(lines) if '"event":"item"' in x)
    lines[first_item] = lines[first_item].replace('"event":"item"', '"event":"edited"')
    (state / "audit.jsonl").write_text("\n".join(lines) + "\n")
    assert verify_chain(state / "audit.jsonl")[0] is False


def test_single_file_source(cli, tmp_path: Path) -> None:
    res = cli("deidentify", TEST_FILES / "CT_small.dcm", tmp_path / "out", "-q")
    assert res.exit_code == 0
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1

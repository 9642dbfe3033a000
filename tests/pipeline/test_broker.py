"""Honest broker: off by default; with a separate key, nothing under DST reveals an original
ID without that key, and the key holder's lookup round-trips in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from phiscrub.demo import Patient
from phiscrub.pipeline.audit import check_log
from tests.conftest import KEY
from tests.pipeline.jobs import make_job, scan_tree

BROKER = "broker-secret-9f8e7d6c5b4a3f2e1d0c"


def _uids(dst: Path) -> dict[str, str]:
    ds = dcmread(next(p for p in dst.rglob("*.dcm") if ".phiscrub" not in p.parts), stop_before_pixels=True)
    return {"PatientID": str(ds.PatientID), "StudyInstanceUID": str(ds.StudyInstanceUID)}


def test_off_by_default(cli, tmp_path: Path) -> None:
    _, dst, _, res = make_job(cli, tmp_path, n_ct=1, n_mr=0)
    assert res.exit_code == 0
    assert not (dst / ".phiscrub" / "broker.map").exists()


def test_map_is_encrypted_and_lookup_round_trips(cli, tmp_path: Path) -> None:
    key = tmp_path / "broker.key"
    key.write_text(BROKER + "\n")
    src, dst, planted, res = make_job(cli, tmp_path, "--broker-key", key)
    assert res.exit_code == 0, res.output
    p = Patient()
    study_uid = str(dcmread(sorted(src.rglob("*.dcm"))[0], stop_before_pixels=True).StudyInstanceUID)
    # without the broker key nothing under DST holds an original ID (map included)
    assert scan_tree(dst, [*planted, p.pid, p.accession, study_uid]) == {}
    assert check_log(dst / ".phiscrub" / "audit.jsonl").ok
    out = _uids(dst)
    # pseudonym -> original, for the key holder
    r = cli("broker", "lookup", dst, out["PatientID"], "--broker-key", key)
    assert r.exit_code == 0 and f"PatientID\t{p.pid}\t{out['PatientID']}" in r.output
    r = cli("broker", "lookup", dst, out["StudyInstanceUID"], "--kind", "StudyInstanceUID", "--broker-key", key)
    assert r.exit_code == 0 and f"StudyInstanceUID\t{study_uid}\t{out['StudyInstanceUID']}" in r.output
    # original -> pseudonym: the accession number the policy emptied is still mapped to its study
    r = cli("broker", "lookup", dst, p.accession, "--broker-key", key)
    assert r.exit_code == 0 and f"AccessionNumber\t{p.accession}\t(removed)" in r.output
    # the env var works as the key too, and a lookup is itself logged (without the value)
    r = cli("broker", "lookup", dst, out["PatientID"], env={"PHISCRUB_BROKER_KEY": BROKER})
    assert r.exit_code == 0
    lookups = (dst / ".phiscrub" / "broker-lookups.jsonl").read_text()
    assert lookups.count('"event":"broker-lookup"') == 3 + 1 and p.pid not in lookups
    # a wrong key opens nothing; no key is a usage error
    bad = tmp_path / "other.key"
    bad.write_text("some-other-broker-key-123456\n")
    assert cli("broker", "lookup", dst, out["PatientID"], "--broker-key", bad).exit_code == 2
    assert cli("broker", "lookup", dst, out["PatientID"]).exit_code == 2
    # a rerun adds no duplicate and keeps the map byte-identical (deterministic encryption)
    before = (dst / ".phiscrub" / "broker.map").read_bytes()
    assert cli("deidentify", src, dst, "-q", "--restart", "--broker-key", key).exit_code == 0
    assert (dst / ".phiscrub" / "broker.map").read_bytes() == before


def test_the_pseudonym_key_is_refused_as_broker_key(cli, tmp_path: Path) -> None:
    key = tmp_path / "same.key"
    key.write_text(KEY + "\n")
    _, _, _, res = make_job(cli, tmp_path, "--broker-key", key, n_ct=1, n_mr=0)
    assert res.exit_code == 2 and "must not be the pseudonym key" in res.output


@pytest.mark.parametrize("n", [1])
def test_map_lines_are_not_plaintext(cli, tmp_path: Path, n: int) -> None:
    import base64

    key = tmp_path / "broker.key"
    key.write_text(BROKER + "\n")
    _, dst, _, res = make_job(cli, tmp_path, "--broker-key", key, n_ct=n, n_mr=0)
    assert res.exit_code == 0
    lines = (dst / ".phiscrub" / "broker.map").read_bytes().splitlines()
    assert lines
    for line in lines:
        raw = base64.b64decode(line, validate=True)
        assert len(raw) > 12 + 16 and b"PatientID" not in raw and b"MRN" not in raw
    assert oct((dst / ".phiscrub" / "broker.map").stat().st_mode & 0o777) == "0o600"

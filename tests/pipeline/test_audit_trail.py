"""The audit trail: what each item record carries, that tampering of every kind is caught
at the first bad sequence number, and the Cloud Logging / BigQuery exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phiscrub.keys import KeyRing
from phiscrub.pipeline.audit import AuditLog, check_log, read_records
from phiscrub.pipeline.audit_export import BIGQUERY_SCHEMA
from tests.conftest import KEY
from tests.pipeline.jobs import make_job, scan_tree

ROOT = Path(__file__).resolve().parents[2]


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


def _write(log: Path, lines: list[str]) -> None:
    log.write_text("".join(x + "\n" for x in lines))


def _rehash(lines: list[str]) -> list[str]:
    """What a forger without the key can do: recompute every hash and link."""
    import hashlib

    prev, out = "0" * 64, []
    for i, line in enumerate(lines):
        rec = json.loads(line)
        rec.pop("hash")
        mac = rec.pop("mac", None)  # the forger cannot compute MACs: the old ones are kept
        rec["seq"], rec["prev"] = i + 1, prev
        rec["hash"] = hashlib.sha256(json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        if mac is not None:
            rec["mac"] = mac
        prev = rec["hash"]
        out.append(json.dumps(rec, sort_keys=True, separators=(",", ":")))
    return out


@pytest.fixture
def job(cli, tmp_path: Path):
    src, dst, planted, res = make_job(cli, tmp_path)
    assert res.exit_code == 0, res.output
    return src, dst, planted


def test_item_records_carry_what_the_issue_lists_and_no_value(job) -> None:
    _, dst, planted = job
    recs = read_records(dst / ".phiscrub" / "audit.jsonl")
    items = [r for r in recs if r["event"] == "item"]
    assert len(items) == 4
    for r in items:
        for key in ("item", "output", "policy", "version", "actions", "phi", "pixel_boxes", "verification", "at_s",
                    "reason", "hash", "prev", "mac"):
            assert key in r, key
        assert r["verification"] == "passed" and r["status"] == "done"
        assert r["phi"]["person-name"] >= 1 and r["phi"]["identifier"] >= 1
    assert scan_tree(dst / ".phiscrub", planted) == {}
    assert check_log(dst / ".phiscrub" / "audit.jsonl", KeyRing(KEY.encode())).ok


@pytest.mark.parametrize("how", ["edit", "edit-and-rehash", "remove", "insert", "reorder", "truncate"])
def test_tampering_is_caught_at_the_first_bad_record(job, cli, how: str) -> None:
    _, dst, _ = job
    log = dst / ".phiscrub" / "audit.jsonl"
    lines = _lines(log)
    n = len(lines)
    if how == "edit":
        lines[2] = lines[2].replace('"status":"done"', '"status":"quarantined"')
        bad = 3
    elif how == "edit-and-rehash":
        lines[2] = lines[2].replace('"status":"done"', '"status":"quarantined"')
        lines = _rehash(lines)
        bad = 3  # the chain is consistent again; the edited record's MAC is not
    elif how == "remove":
        del lines[3]
        bad = 4
    elif how == "insert":
        lines.insert(2, lines[1])
        bad = 3
    elif how == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
        bad = 3
    else:
        lines = lines[:-2]
        bad = n - 1
    _write(log, lines)
    res = check_log(log, KeyRing(KEY.encode()))
    assert not res.ok and res.first_bad == bad, (res.first_bad, res.reason)
    out = cli("audit", "verify", dst)
    assert out.exit_code == 1 and f"seq {bad}:" in out.output


def test_keyless_check_misses_a_rehash_but_the_keyed_one_does_not(job) -> None:
    _, dst, _ = job
    log = dst / ".phiscrub" / "audit.jsonl"
    lines = _rehash([x.replace('"status":"done"', '"status":"failed"', 1) for x in _lines(log)])
    _write(log, lines)
    (dst / ".phiscrub" / "audit.head.json").unlink()  # a forger removes the anchor too
    assert check_log(log).ok  # hash and links alone cannot tell
    assert not check_log(log, KeyRing(KEY.encode())).ok


def test_a_torn_tail_is_moved_aside_and_recorded_not_lost(job, cli) -> None:
    _, dst, _ = job
    log = dst / ".phiscrub" / "audit.jsonl"
    with log.open("a") as fh:
        fh.write('{"seq":99,"event":"item","partial')  # what a kill -9 mid-write leaves
    res = check_log(log)
    assert not res.ok and "torn" in res.reason
    a = AuditLog(log, KeyRing(KEY.encode()))
    a.append("run-start")
    a.close()
    res = check_log(log, KeyRing(KEY.encode()))
    assert res.ok and any("torn" in n for n in res.notes)
    saved = list(log.parent.glob("audit.jsonl.torn-*"))
    assert len(saved) == 1 and saved[0].read_bytes().endswith(b"partial")
    assert cli("audit", "verify", dst).exit_code == 0


def test_a_truncation_before_reopening_is_recorded_in_the_chain(job) -> None:
    _, dst, _ = job
    log = dst / ".phiscrub" / "audit.jsonl"
    _write(log, _lines(log)[:-3])
    a = AuditLog(log, KeyRing(KEY.encode()))  # a later run appends: the gap must stay visible
    a.append("run-start")
    a.close()
    res = check_log(log, KeyRing(KEY.encode()))
    assert not res.ok and "anchor" in res.reason


def test_exports_for_cloud_logging_and_bigquery(job, cli, tmp_path: Path) -> None:
    _, dst, planted = job
    cfg = tmp_path / "c.yaml"
    cfg.write_text("audit: {retention_days: 400}\n")
    res = cli("audit", "export", dst, "--format", "cloud-logging", "--project", "my-proj", "-o", tmp_path / "cl.jsonl",
              "--config", cfg)
    assert res.exit_code == 0 and "--retention-days=400" in res.output
    entries = [json.loads(x) for x in (tmp_path / "cl.jsonl").read_text().splitlines()]
    n = len(read_records(dst / ".phiscrub" / "audit.jsonl"))
    assert len(entries) == n
    for e in entries:
        assert e["logName"] == "projects/my-proj/logs/phiscrub-audit"
        assert e["severity"] in ("INFO", "WARNING", "ERROR") and e["timestamp"].endswith("Z")
        assert e["jsonPayload"]["seq"] >= 1 and e["labels"]["retention_days"] == "400"
    res = cli("audit", "export", dst, "--format", "bigquery", "-o", tmp_path / "bq.jsonl", "--schema-out", tmp_path / "s.json")
    assert res.exit_code == 0 and f"--time_partitioning_expiration={2190 * 86400}" in res.output
    names = {c["name"] for c in BIGQUERY_SCHEMA}
    required = {c["name"] for c in BIGQUERY_SCHEMA if c["mode"] == "REQUIRED"}
    for line in (tmp_path / "bq.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert set(row) <= names and required <= set(row)
        json.loads(row["record"])
    assert json.loads((tmp_path / "s.json").read_text()) == BIGQUERY_SCHEMA
    # the documented schema is the one the export writes
    assert json.loads((ROOT / "docs" / "audit_bigquery_schema.json").read_text()) == BIGQUERY_SCHEMA
    for f in ("cl.jsonl", "bq.jsonl"):
        blob = (tmp_path / f).read_text()
        assert not [v for v in planted if len(v) >= 4 and v in blob]


def test_retention_setting_is_validated(tmp_path: Path) -> None:
    from phiscrub.errors import ConfigError
    from phiscrub.policy.config import from_mapping

    assert from_mapping({"audit": {"retention_days": 30}}).audit_retention_days == 30
    with pytest.raises(ConfigError, match="audit.retention_days"):
        from_mapping({"audit": {"retention_days": 0}})

"""Guard rails on deidentify (and verify/report): each mistake is one usage line, exit 2,
caught before anything is written."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from phiscrub.cli_guards import KEY_MISMATCH, GuardError, check_apart
from phiscrub.demo import make_study
from tests.conftest import KEY

OTHER_KEY = "another-key-0123456789abcdef0123"


@pytest.fixture
def src(tmp_path: Path) -> Path:
    make_study(tmp_path / "in", n_ct=1, n_mr=1)
    return tmp_path / "in"


def _refused(res, words: str) -> None:
    """Exit 2, one line on the console that says why, and no traceback."""
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and words in lines[0], res.output
    assert "Traceback" not in res.output


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_dst_inside_src_is_refused(src: Path, cli) -> None:
    before = _files(src)
    _refused(cli("deidentify", src, src / "out", "-q"), "DST is inside SRC")
    assert _files(src) == before and not (src / "out").exists()  # nothing written into the input


def test_dst_inside_src_through_a_symlink_is_refused(src: Path, tmp_path: Path, cli) -> None:
    (tmp_path / "link").symlink_to(src, target_is_directory=True)
    _refused(cli("deidentify", src, tmp_path / "link" / "out", "-q"), "DST is inside SRC")
    _refused(cli("deidentify", tmp_path / "link", src / "out", "-q"), "DST is inside SRC")


def test_dst_equal_to_src_is_refused(src: Path, tmp_path: Path, cli) -> None:
    _refused(cli("deidentify", src, src, "-q"), "DST is SRC")
    (tmp_path / "same").symlink_to(src, target_is_directory=True)
    _refused(cli("deidentify", src, tmp_path / "same", "-q"), "DST is SRC")


def test_src_inside_dst_is_refused(src: Path, tmp_path: Path, cli) -> None:
    _refused(cli("deidentify", src, tmp_path, "-q"), "SRC is inside DST")


def test_dst_that_is_a_file_is_a_usage_error(src: Path, tmp_path: Path, cli) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    _refused(cli("deidentify", src, f, "-q"), "is a file, not a folder")
    _refused(cli("deidentify", src, f / "sub", "-q"), "is a file, not a folder")
    assert f.read_text() == "x"


@pytest.mark.parametrize("opt", ["--state", "--quarantine"])
def test_state_or_quarantine_that_is_a_file_is_a_usage_error(src: Path, tmp_path: Path, cli, opt: str) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    _refused(cli("deidentify", src, tmp_path / "out", "-q", opt, f), f"{opt} {f}: is a file")
    assert not (tmp_path / "out").exists()  # refused before DST is made


@pytest.mark.parametrize("opt", ["--state", "--quarantine"])
def test_state_or_quarantine_inside_src_is_refused(src: Path, tmp_path: Path, cli, opt: str) -> None:
    _refused(cli("deidentify", src, tmp_path / "out", "-q", opt, src / "side"), f"{opt} must be outside SRC")


def test_quarantine_inside_dst_is_still_refused(src: Path, tmp_path: Path, cli) -> None:
    _refused(cli("deidentify", src, tmp_path / "out", "-q", "--quarantine", tmp_path / "out" / "q"),
             "--quarantine must be outside the output folder")


def test_key_file_with_generate_key_is_a_usage_error(src: Path, tmp_path: Path, cli) -> None:
    key = tmp_path / "k.key"
    key.write_text(KEY + "\n")
    new = tmp_path / "new.key"
    _refused(cli("deidentify", src, tmp_path / "out", "-q", "--key-file", key, "--generate-key", new),
             "--key-file and --generate-key together")
    assert not new.exists()  # no key written for a run that does not happen


def test_rerun_with_another_key_is_refused(src: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    written = {p: p.stat().st_mtime_ns for p in _files(out)}
    for extra in ((), ("--restart",)):
        res = cli("deidentify", src, out, "-q", *extra, env={"PHISCRUB_KEY": OTHER_KEY})
        _refused(res, KEY_MISMATCH)
        assert {p: p.stat().st_mtime_ns for p in _files(out)} == written  # not one byte more in DST
    # the fingerprint is a keyed hash: the key itself is nowhere in the state
    db = (out / ".phiscrub" / "state.sqlite").read_bytes()
    assert KEY.encode() not in db and OTHER_KEY.encode() not in db


def test_rerun_with_the_same_key_still_resumes(src: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")}
    res = cli("deidentify", src, out, "-q")
    assert res.exit_code == 0 and "3 item(s) already done" in res.output, res.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.dcm")} == first


def test_another_key_through_a_key_file_is_refused(src: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    key = tmp_path / "other.key"
    key.write_text(OTHER_KEY + "\n")
    _refused(cli("deidentify", src, out, "-q", "--key-file", key), KEY_MISMATCH)


def _drop_fingerprint(out: Path) -> None:
    """State as a phiscrub before the fingerprint wrote it: no meta table."""
    db = sqlite3.connect(out / ".phiscrub" / "state.sqlite")
    db.execute("DROP TABLE meta")
    db.commit()
    db.close()


def _fingerprint(out: Path) -> list:
    db = sqlite3.connect(out / ".phiscrub" / "state.sqlite")
    try:
        return db.execute("SELECT value FROM meta WHERE name='key_fingerprint'").fetchall()
    finally:
        db.close()


def test_older_state_is_accepted_and_gets_a_fingerprint(src: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    _drop_fingerprint(out)
    res = cli("deidentify", src, out, "-q")
    assert res.exit_code == 0 and "already done" in res.output, res.output
    assert len(_fingerprint(out)) == 1
    _refused(cli("deidentify", src, out, "-q", env={"PHISCRUB_KEY": OTHER_KEY}), KEY_MISMATCH)


def test_older_state_with_another_key_is_refused_by_the_audit(src: Path, tmp_path: Path, cli) -> None:
    """No fingerprint yet, but the audit's record MACs were made with the key of the run
    that wrote DST: another key cannot make them."""
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    _drop_fingerprint(out)
    _refused(cli("deidentify", src, out, "-q", env={"PHISCRUB_KEY": OTHER_KEY}), KEY_MISMATCH)
    assert _fingerprint(out) == []  # a refused run records nothing


def test_older_state_without_an_audit_is_accepted(src: Path, tmp_path: Path, cli) -> None:
    out = tmp_path / "out"
    assert cli("deidentify", src, out, "-q").exit_code == 0
    _drop_fingerprint(out)
    for name in ("audit.jsonl", "audit.head.json"):
        (out / ".phiscrub" / name).unlink()
    assert cli("deidentify", src, out, "-q").exit_code == 0
    assert len(_fingerprint(out)) == 1


@pytest.mark.parametrize(("src_uri", "dst_uri", "words"), [
    ("gs://b/in", "gs://b/in/out", "DST is inside SRC"),
    ("gs://b/in/", "gs://b/in", "DST is SRC"),
    ("gs://b/in", "gcs://b/in/out", "DST is inside SRC"),
    ("s3://b/in/x", "s3://b/in", "SRC is inside DST"),
    ("gs://b", "gs://b/out", "DST is inside SRC"),
])
def test_bucket_overlap_is_refused(src_uri: str, dst_uri: str, words: str) -> None:
    with pytest.raises(GuardError, match=words):
        check_apart(src_uri, dst_uri)


@pytest.mark.parametrize(("src_uri", "dst_uri"), [
    ("gs://b/in", "gs://b/input"),
    ("gs://b/in", "s3://b/in/out"),
    ("gs://b/in", "gs://c/in/out"),
    ("gs://b/in", "dicomweb+https://host/in/out"),
])
def test_buckets_apart_are_accepted(src_uri: str, dst_uri: str) -> None:
    check_apart(src_uri, dst_uri)


def test_bucket_dst_inside_bucket_src_through_the_cli(tmp_path: Path, cli) -> None:
    _refused(cli("deidentify", "gs://b/in", "gs://b/in/out", "-q", "--state", tmp_path / "state"), "DST is inside SRC")


@pytest.mark.parametrize("command", ["verify", "report"])
def test_verify_and_report_name_a_dst_that_is_a_file(src: Path, tmp_path: Path, cli, command: str) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    args = (src, f) if command == "verify" else (f,)
    _refused(cli(command, *args), "is a file, not a folder")

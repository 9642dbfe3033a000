"""Engines and failure handling: the Dask engine on a real scheduler with two worker
processes gives the local pool's output byte for byte; a worker killed by a segfault fails
only its item in both engines; transient storage errors are retried (attempts in the
state); permanent ones are quarantined at once; --studies selects by StudyInstanceUID."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from phiscrub.pipeline.retry import RetryPolicy, is_transient
from tests.pipeline.corpus import make_corpus, tree
from tests.pipeline.plugins import CRASH_MARKER, FLAKY_FAILS
from tests.pipeline.servers import dask_cluster  # noqa: F401 - fixture


def _crash_corpus(root: Path, n: int = 10) -> Path:
    corpus = make_corpus(root, n, per_study=5, seed=5)
    bomb = corpus.files[3]
    bomb.write_bytes(bomb.read_bytes() + CRASH_MARKER)  # trailing bytes: the rest is still DICOM
    return bomb


def _statuses(out: Path) -> list[tuple[str, str]]:
    db = sqlite3.connect(out / ".phiscrub" / "state.sqlite")
    try:
        return sorted(db.execute("SELECT status, category FROM items").fetchall())
    finally:
        db.close()


def test_a_segfault_fails_only_its_item_in_the_pool(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHISCRUB_PLUGINS", "tests.pipeline.plugins")
    bomb = _crash_corpus(tmp_path / "in")
    res = cli("deidentify", f"crashtest://{tmp_path / 'in'}", tmp_path / "out", "-q", "-j", "2")
    assert res.exit_code == 1
    assert f"failed: crashtest://{bomb}: the worker process died" in res.output
    assert _statuses(tmp_path / "out") == [("done", "")] * 9 + [("failed", "crash")]
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 9
    assert not [p for p in (tmp_path / "out").rglob(".partial-*")]


@pytest.mark.slow
def test_dask_matches_the_pool_and_isolates_a_crash(dask_cluster, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    make_corpus(tmp_path / "in", 40, per_study=10, seed=6)
    assert cli("deidentify", tmp_path / "in", tmp_path / "pool", "-q", "-j", "2").exit_code == 0
    res = cli("deidentify", tmp_path / "in", tmp_path / "dask", "-q", "--scheduler", dask_cluster)
    assert res.exit_code == 0, res.output
    assert tree(tmp_path / "dask") == tree(tmp_path / "pool") and len(tree(tmp_path / "pool")) == 40
    assert _statuses(tmp_path / "dask") == [("done", "")] * 40
    # a worker that segfaults: the cluster survives, only that item fails
    monkeypatch.setenv("PHISCRUB_PLUGINS", "tests.pipeline.plugins")
    bomb = _crash_corpus(tmp_path / "crash")
    res = cli("deidentify", f"crashtest://{tmp_path / 'crash'}", tmp_path / "crash-out", "-q", "--scheduler", dask_cluster)
    assert res.exit_code == 1
    assert f"failed: crashtest://{bomb}: the worker process died" in res.output
    assert _statuses(tmp_path / "crash-out") == [("done", "")] * 9 + [("failed", "crash")]


def test_transient_errors_are_retried_and_counted(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHISCRUB_PLUGINS", "tests.pipeline.plugins")
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.001)
    corpus = make_corpus(tmp_path / "in", 4, per_study=4, seed=7)
    (corpus.files[0].parent / "denied_scan.dcm").write_bytes(corpus.files[0].read_bytes())
    res = cli("deidentify", f"flaky://{tmp_path / 'in'}", tmp_path / "out", "-q", "-j", "1")
    assert res.exit_code == 1
    db = sqlite3.connect(tmp_path / "out" / ".phiscrub" / "state.sqlite")
    rows = sorted(db.execute("SELECT status, category, attempts FROM items").fetchall())
    db.close()
    # each flaky file: FLAKY_FAILS resets, then success; the denied one: quarantined at the first try
    assert rows == [("done", "", FLAKY_FAILS + 1)] * 4 + [("quarantined", "io", 1)]
    assert "cannot read (Permission denied)" in res.output


def test_retries_are_bounded(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHISCRUB_PLUGINS", "tests.pipeline.plugins")
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt: 0.001)
    monkeypatch.setattr("tests.pipeline.plugins.FLAKY_FAILS", 99)
    make_corpus(tmp_path / "in", 1, seed=1)
    res = cli("deidentify", f"flaky://{tmp_path / 'in'}", tmp_path / "out", "-q", "-j", "1")
    assert res.exit_code == 1 and "storage unavailable after 5 attempt(s)" in res.output
    assert _statuses(tmp_path / "out") == [("failed", "transient")]


def test_transient_classification() -> None:
    class Http(Exception):
        def __init__(self, code: int) -> None:
            self.code = code

    assert is_transient(ConnectionResetError()) and is_transient(TimeoutError()) and is_transient(Http(503))
    assert is_transient(Http(429)) and is_transient(OSError(5, "I/O error"))
    assert not is_transient(FileNotFoundError()) and not is_transient(PermissionError()) and not is_transient(Http(404))
    assert not is_transient(ValueError("bad file")) and not is_transient(OSError(28, "No space left on device"))
    delays = [RetryPolicy().delay(n) for n in range(1, 12)]
    assert all(0 <= d <= RetryPolicy().cap_s for d in delays)


def test_studies_selects_by_study_uid(cli, tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "in", 12, per_study=4, seed=2)
    chosen = sorted(corpus.studies)[1]
    (tmp_path / "studies.txt").write_text(f"# one study\n{chosen}\n")
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q", "--studies", tmp_path / "studies.txt")
    assert res.exit_code == 0, res.output
    assert "8 item(s) of other studies not selected" in res.output
    from pydicom import dcmread

    outs = [dcmread(p) for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(outs) == 4 and len({str(d.StudyInstanceUID) for d in outs}) == 1
    (tmp_path / "bad.txt").write_text("Quorvath^Annelise\n")
    res = cli("deidentify", tmp_path / "in", tmp_path / "out2", "-q", "--studies", tmp_path / "bad.txt")
    assert res.exit_code == 2 and "line 1" in res.output and "Quorvath" not in res.output

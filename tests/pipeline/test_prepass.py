"""The job-wide pre-pass: one output per SOP Instance UID whatever the copies and the worker
count, free text cleaned with what the whole study knows, and a resume that redoes the items
of a study that gained values."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from phiscrub.demo import make_study
from phiscrub.pipeline.report import build_report

from ..conftest import TEST_FILES, scan_tree

CLEAN = "options: [clean_descriptors, clean_structured_content, retain_longitudinal_modified_dates]\n"


def _tree(root: Path) -> dict[str, str]:
    """Every output file (the state folder aside: it holds timings) by its SHA-256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".phiscrub" not in p.parts}


def _last_run(dst: Path) -> dict:
    return json.loads((dst / ".phiscrub" / "last-run.json").read_text())


def _records(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / ".phiscrub" / "audit.jsonl").read_text().splitlines()]


def _copies(src: Path) -> tuple[int, int]:
    """Beside each instance of a demo study: a byte-identical copy, and a re-sent copy with
    other content and the same SOP Instance UID. Returns (instances, files)."""
    make_study(src / "study", n_ct=3, n_mr=2)
    originals = sorted((src / "study").rglob("*.dcm"))
    (src / "zz-resent").mkdir()
    (src / "zz-copy").mkdir()
    for i, p in enumerate(originals):
        shutil.copyfile(p, src / "zz-copy" / f"c{i}.dcm")
        ds = dcmread(p)
        ds.InstanceNumber = 900 + i  # kept by the policy: tells which copy gave the output
        ds.save_as(src / "zz-resent" / f"r{i}.dcm", enforce_file_format=True)
    return len(originals), 3 * len(originals)


def test_duplicate_sop_uids_give_one_output_each_and_the_same_tree_with_any_worker_count(tmp_path: Path, cli) -> None:
    n, files = _copies(tmp_path / "in")
    trees = []
    for w in ("1", "2"):
        dst = tmp_path / f"out{w}"
        res = cli("deidentify", tmp_path / "in", dst, "-q", "--workers", w, "--quarantine", tmp_path / f"q{w}")
        assert res.exit_code == 1, res.output  # the differing copies are quarantined: a partial failure
        run = _last_run(dst)
        outputs = [p for p in dst.rglob("*.dcm")]
        assert run["done"] == len(outputs) == n  # one output per SOP Instance UID, none overwritten
        assert run["duplicates"] == n and run["quarantined"] == n
        sops = [str(dcmread(p).SOPInstanceUID) for p in outputs]
        assert len(set(sops)) == n
        for p in outputs:  # the released copy is the first by sorted source URI: the original
            assert int(dcmread(p).InstanceNumber) < 900
        reasons = {r.get("reason") for r in _records(dst) if r.get("status") == "quarantined"}
        assert reasons == {"duplicate SOP Instance UID, different content"}
        pre = next(r for r in _records(dst) if r.get("event") == "prepass")
        assert pre["shared_sop_uids"] == n and pre["duplicates"] == n and pre["conflicts"] == n
        trees.append(_tree(dst))
        html = build_report(dst)  # the compliance officer sees the duplicates counted apart
        assert f"<div class='card duplicate'><b>{n}</b>duplicate</div>" in html
    assert trees[0] == trees[1]


def test_a_rerun_keeps_what_it_released_and_records_the_copies_again(tmp_path: Path, cli) -> None:
    n, _ = _copies(tmp_path / "in")
    dst = tmp_path / "out"
    cli("deidentify", tmp_path / "in", dst, "-q")
    before = _tree(dst)
    # a re-sent copy that sorts before the released original arrives after the first run
    first = sorted((tmp_path / "in" / "study").rglob("*.dcm"))[0]
    ds = dcmread(first)
    ds.ImageComments = "arrived later"
    (tmp_path / "in" / "aa-late").mkdir()
    ds.save_as(tmp_path / "in" / "aa-late" / "x.dcm", enforce_file_format=True)
    res = cli("deidentify", tmp_path / "in", dst, "-q")
    assert res.exit_code == 1
    assert _tree(dst) == before  # nothing written is replaced
    run = _last_run(dst)
    assert run["skipped"] == n and run["done"] == 0 and run["quarantined"] == n + 1


def test_a_damaged_copy_is_quarantined_for_its_damage_and_the_complete_one_released(tmp_path: Path, cli) -> None:
    make_study(tmp_path / "in" / "zz", n_ct=1, n_mr=0)
    ct = next((tmp_path / "in" / "zz").rglob("*CT_001.dcm"))
    data = ct.read_bytes()
    (tmp_path / "in" / "aa").mkdir()
    (tmp_path / "in" / "aa" / "cut.dcm").write_bytes(data[: len(data) - 1000])  # sorts first, pixel data cut
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert res.exit_code == 1
    outs = list((tmp_path / "out").rglob("*.dcm"))
    assert _last_run(tmp_path / "out")["done"] == len(outs) == 2  # the CT and the SR
    bad = [r for r in _records(tmp_path / "out") if r.get("status") == "quarantined"]
    assert len(bad) == 1 and "truncated" in bad[0]["reason"]
    ct_out = next(dcmread(p) for p in outs if dcmread(p).Modality == "CT")
    assert ct_out.PixelData == dcmread(ct).PixelData


def _study_with_sibling_names(root: Path) -> tuple[Path, Path]:
    make_study(root, n_ct=2, n_mr=0)
    a, b = sorted(root.rglob("*CT_00*.dcm"))
    ds = dcmread(a)
    ds.ReferringPhysicianName = "Quenby^Harriet"
    ds.save_as(a, enforce_file_format=True)
    ds = dcmread(b)  # names the physician and a relative that only siblings hold
    ds.ReferringPhysicianName = ""
    ds.ImageComments = "Per Dr Quenby: patient accompanied by Ottoline Brackwater"
    ds.save_as(b, enforce_file_format=True)
    return a, b


def test_free_text_is_cleaned_with_what_the_whole_study_knows(tmp_path: Path, cli) -> None:
    _study_with_sibling_names(tmp_path / "in")
    (tmp_path / "c.yaml").write_text(CLEAN)
    assert cli("deidentify", tmp_path / "in", tmp_path / "out", "-q", "-c", tmp_path / "c.yaml").exit_code == 0
    hits = scan_tree(tmp_path / "out", ["Quenby", "Harriet"])
    assert not hits, hits
    # the relative's name is known to no instance yet: it stays (the resume test adds it)
    comments = [str(dcmread(p).get("ImageComments", "")) for p in (tmp_path / "out").rglob("*.dcm")]
    assert any("Ottoline" in c for c in comments)


def test_a_resume_redoes_the_items_of_a_study_that_gained_values(tmp_path: Path, cli) -> None:
    a, _b = _study_with_sibling_names(tmp_path / "in")
    (tmp_path / "c.yaml").write_text(CLEAN)
    args = ("-q", "-c", tmp_path / "c.yaml")
    assert cli("deidentify", tmp_path / "in", tmp_path / "out", *args).exit_code == 0
    n = len(list((tmp_path / "out").rglob("*.dcm")))
    # unchanged study: everything is skipped
    assert cli("deidentify", tmp_path / "in", tmp_path / "out", *args).exit_code == 0
    assert _last_run(tmp_path / "out")["skipped"] == n
    # a new instance of the same study names the relative: the study's items are redone
    ds = dcmread(a)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.add_new(0x00101060, "PN", "Brackwater^Ottoline")  # PatientMotherBirthName
    ds.save_as(a.parent / "late_arrival.dcm", enforce_file_format=True)
    assert cli("deidentify", tmp_path / "in", tmp_path / "out", *args).exit_code == 0
    run = _last_run(tmp_path / "out")
    assert run["skipped"] == 0 and run["done"] == n + 1
    assert not scan_tree(tmp_path / "out", ["Ottoline", "Brackwater", "Quenby"])


def test_pydicom_test_files_done_equals_outputs(tmp_path: Path, cli) -> None:
    """pydicom's own files share SOP Instance UIDs (one by 19 files): before the pre-pass,
    74 items counted as done with no output of their own."""
    src = tmp_path / "in"
    shutil.copytree(TEST_FILES, src, ignore=shutil.ignore_patterns("*.gz", "*.bz2", "*.py", "*.txt", "*.json"))
    cli("deidentify", src, tmp_path / "out", "-q", "--quarantine", tmp_path / "q")
    run = _last_run(tmp_path / "out")
    outputs = list((tmp_path / "out").rglob("*.dcm"))
    assert run["done"] == len(outputs)
    assert run["duplicates"] > 0
    sops = [str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in outputs]
    assert len(sops) == len(set(sops))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_index_holds_no_value_in_state_or_audit(tmp_path: Path, cli, workers: str) -> None:
    planted, _ = make_study(tmp_path / "in", n_ct=2, n_mr=1)
    (tmp_path / "c.yaml").write_text(CLEAN)
    cli("deidentify", tmp_path / "in", tmp_path / "out", "-q", "-c", tmp_path / "c.yaml", "--workers", workers)
    assert not scan_tree(tmp_path / "out" / ".phiscrub", planted.values)


def test_one_instance_at_a_time_what_was_released_stays_released(tmp_path: Path) -> None:
    """The gateway's and the bucket service's path: no pre-pass sees the whole job."""
    from phiscrub.keys import KeyRing
    from phiscrub.pipeline.released import process_single
    from phiscrub.pipeline.runner import Job
    from phiscrub.pipeline.state import JobState
    from phiscrub.pipeline.storage import Item
    from phiscrub.policy.config import load_config

    from ..conftest import KEY

    n, _ = _copies(tmp_path / "in")
    cfg = load_config(None)
    job = Job(cfg, KeyRing(KEY.encode()), cfg.policy.digest(), tmp_path / "out", tmp_path / "q")
    state = JobState(tmp_path / "state.sqlite")
    statuses = []
    # the re-sent copies arrive first here: they are released, the originals then conflict
    for p in sorted((tmp_path / "in").rglob("*.dcm"), key=lambda p: (p.parent.name != "zz-resent", str(p))):
        item = Item(str(p), p.stat().st_size, str(p.stat().st_mtime_ns))
        r = process_single(item, job, JobState.key_of(job.keys, item, job.policy_hash), state.claim_sop, state.unclaim_sop)
        statuses.append(r.status)
    outs = list((tmp_path / "out").rglob("*.dcm"))
    assert len(outs) == statuses.count("done") == n
    assert statuses.count("quarantined") == 2 * n  # originals and their copies differ from what was sent
    assert all(int(dcmread(p).InstanceNumber) >= 900 for p in outs)
    # the same file delivered again is processed again (the same output, rewritten identically)
    p = next((tmp_path / "in" / "zz-resent").glob("*.dcm"))
    item = Item(str(p), p.stat().st_size, str(p.stat().st_mtime_ns))
    key = JobState.key_of(job.keys, item, job.policy_hash)
    assert process_single(item, job, key, state.claim_sop, state.unclaim_sop).status == "done"
    state.close()

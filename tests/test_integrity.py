"""Referential integrity and determinism across a multi-series study plus an SR."""

from __future__ import annotations

from pathlib import Path

from pydicom import dcmread

from phiscrub.demo import Patient, make_study


def _outputs(root: Path) -> list:
    return [dcmread(p) for p in sorted(root.rglob("*.dcm"))]


def test_references_remapped_consistently(tmp_path: Path, cli) -> None:
    planted, paths = make_study(tmp_path / "in", n_ct=3, n_mr=2)
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    outs = _outputs(tmp_path / "out")
    assert len(outs) == len(paths) == 6
    studies = {str(d.StudyInstanceUID) for d in outs}
    assert len(studies) == 1 and next(iter(studies)).startswith("2.25.")
    assert len({str(d.PatientID) for d in outs}) == 1
    sr = next(d for d in outs if d.Modality == "SR")
    cts = {str(d.SOPInstanceUID): d for d in outs if d.Modality == "CT"}
    refs = [str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            for i in sr.ContentSequence if i.ValueType == "IMAGE"]
    assert sorted(refs) == sorted(cts)  # every SR image reference lands on an output CT
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert str(ev.StudyInstanceUID) in studies
    ct_series = {str(d.SeriesInstanceUID) for d in cts.values()}
    assert str(ev.ReferencedSeriesSequence[0].SeriesInstanceUID) in ct_series
    for d in outs:
        assert d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID
        assert d.PatientIdentityRemoved == "YES"
        assert d.LongitudinalTemporalInformationModified == "MODIFIED"
    frames = {str(d.FrameOfReferenceUID) for d in outs if "FrameOfReferenceUID" in d}
    assert len(frames) == 1
    # the path layout: <patient pseudonym>/<study>/<series>/<sop>.dcm
    for p in (tmp_path / "out").rglob("*.dcm"):
        d = dcmread(p)
        parts = p.relative_to(tmp_path / "out").parts
        assert parts == (str(d.PatientID), str(d.StudyInstanceUID), str(d.SeriesInstanceUID),
                         f"{d.SOPInstanceUID}.dcm")


def test_same_patient_same_pseudonym_and_offset_across_runs(tmp_path: Path, cli) -> None:
    make_study(tmp_path / "a", n_ct=1, n_mr=1)
    other = Patient(name="Other^Person", pid="MRN0000042", birth="19800101", study_date="20200101")
    make_study(tmp_path / "a", patient=other, n_ct=1, n_mr=0, folder="second")
    make_study(tmp_path / "b", n_ct=1, n_mr=0)  # same patient as the first, another run
    assert cli("deidentify", tmp_path / "a", tmp_path / "oa", "-q").exit_code == 0
    assert cli("deidentify", tmp_path / "b", tmp_path / "ob", "-q").exit_code == 0
    oa, ob = _outputs(tmp_path / "oa"), _outputs(tmp_path / "ob")
    ids_a = {str(d.PatientID) for d in oa}
    assert len(ids_a) == 2
    first = {str(d.PatientID): d for d in oa}
    b0 = ob[0]
    assert str(b0.PatientID) in first
    a0 = first[str(b0.PatientID)]
    assert a0.StudyDate == b0.StudyDate  # same patient, same date offset
    assert a0.StudyDate != "20210304"


def test_byte_identical_reruns(tmp_path: Path, cli) -> None:
    make_study(tmp_path / "in", n_ct=2, n_mr=1)
    for name in ("o1", "o2"):
        assert cli("deidentify", tmp_path / "in", tmp_path / name, "-q", "-j", "2").exit_code == 0
    f1 = {p.relative_to(tmp_path / "o1"): p.read_bytes() for p in (tmp_path / "o1").rglob("*.dcm")}
    f2 = {p.relative_to(tmp_path / "o2"): p.read_bytes() for p in (tmp_path / "o2").rglob("*.dcm")}
    assert f1 == f2 and len(f1) == 4


def test_other_key_other_pseudonyms(tmp_path: Path, cli) -> None:
    make_study(tmp_path / "in", n_ct=1, n_mr=0)
    assert cli("deidentify", tmp_path / "in", tmp_path / "o1", "-q").exit_code == 0
    env = {"PHISCRUB_KEY": "another-key-abcdefghijklmnop"}
    assert cli("deidentify", tmp_path / "in", tmp_path / "o2", "-q", env=env).exit_code == 0
    a, b = _outputs(tmp_path / "o1")[0], _outputs(tmp_path / "o2")[0]
    assert a.PatientID != b.PatientID and a.StudyInstanceUID != b.StudyInstanceUID


def test_long_lived_process_survives_output_folder_removal(tmp_path: Path) -> None:
    """A service keeps one process; if an operator clears the output folder between jobs,
    the next job must still write (the folder cache is only a cache)."""
    import shutil

    from phiscrub.keys import KeyRing
    from phiscrub.pipeline.runner import Job, process_path
    from phiscrub.policy import load_config

    _, paths = make_study(tmp_path / "in", n_ct=1, n_mr=0)
    cfg = load_config(None)
    job = Job(cfg, KeyRing(b"k" * 20), cfg.policy.digest(), tmp_path / "out")
    assert process_path(str(paths[0]), job).status == "done"
    shutil.rmtree(tmp_path / "out")
    assert process_path(str(paths[0]), job).status == "done"


def test_rerun_resumes_and_redoes_only_what_changed(tmp_path: Path, cli) -> None:
    _, paths = make_study(tmp_path / "in", n_ct=2, n_mr=1)
    assert cli("deidentify", tmp_path / "in", tmp_path / "out", "-q").exit_code == 0
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.dcm")}
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert res.exit_code == 0 and "4 item(s) already done" in res.output
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.dcm")} == first
    # an output removed by hand is made again; a changed source is redone
    victim = next(iter(first))
    victim.unlink()
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert "3 item(s) already done" in res.output and victim.exists()
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q", "--restart")
    assert "already done" not in res.output and "4 done" in res.output
    db = (tmp_path / "out" / ".phiscrub" / "state.sqlite").read_bytes()
    assert str(tmp_path).encode() not in db and b"Davidson" not in db

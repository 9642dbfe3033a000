"""`phiscrub verify SRC DST`: a clean job passes; each kind of damage to a finished job is
reported on its own PHI-free line with exit code 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread

from tests.pipeline.jobs import make_job


@pytest.fixture
def job(cli, tmp_path: Path):
    src, dst, planted, res = make_job(cli, tmp_path)
    assert res.exit_code == 0, res.output
    return src, dst, planted


def _outputs(dst: Path) -> list[Path]:
    return sorted(p for p in dst.rglob("*.dcm") if ".phiscrub" not in p.parts)


def _check(cli, src: Path, dst: Path, planted: list[str], *extra: str) -> tuple[int, list[str]]:
    res = cli("verify", src, dst, "--no-ocr", *extra)
    for v in planted:  # the verdict itself never repeats a value
        if len(v) >= 4:
            assert v not in res.output and v.lower() not in res.output.lower(), v
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x and not x.startswith("note: ")]
    return res.exit_code, lines


def test_a_clean_job_verifies(job, cli) -> None:
    src, dst, planted = job
    code, lines = _check(cli, src, dst, planted)
    assert code == 0 and lines == []


def test_a_value_put_back_into_an_output_is_found(job, cli) -> None:
    src, dst, planted = job
    out = next(p for p in _outputs(dst) if dcmread(p, stop_before_pixels=True).Modality == "CT")
    ds = dcmread(out)
    ds.StudyDescription = "follow-up for Davidson"  # a name part, in a kept-as-cleaned field
    ds.add_new(0x00204000, "LT", "MRN4471923")  # ImageComments: the patient ID
    ds.save_as(out, enforce_file_format=True)
    code, lines = _check(cli, src, dst, planted)
    rel = str(out.relative_to(dst))
    assert code == 1
    assert any(x.startswith(rel) and "header" in x for x in lines), lines
    assert any(x.startswith(rel) and "text field" in x for x in lines), lines


def test_split_study_dangling_reference_and_stray_files(job, cli) -> None:
    src, dst, planted = job
    outs = _outputs(dst)
    ct = next(p for p in outs if dcmread(p, stop_before_pixels=True).Modality == "CT")
    ds = dcmread(ct)
    ds.StudyInstanceUID = "2.25.1234567"
    ds.save_as(ct, enforce_file_format=True)
    sr = next(p for p in outs if dcmread(p, stop_before_pixels=True).Modality == "SR")
    ds = dcmread(sr)
    ds.ContentSequence[1].ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "2.25.99"
    ds.save_as(sr, enforce_file_format=True)
    (dst / "Davidson_notes.txt").write_text("x")  # a file the job never wrote, named after the patient
    (dst / ".partial-1-x.dcm").write_bytes(b"")
    code, lines = _check(cli, src, dst, planted)
    assert code == 1
    text = "\n".join(lines)
    assert "different new Study Instance UIDs" in text
    assert "Referenced SOP Instance UID resolves to no output" in text
    assert "not an output this job recorded" in text
    assert "the path holds a source value or file name" in text
    assert "a partial write was left behind" in text


def test_counts_must_balance(job, cli) -> None:
    src, dst, planted = job
    extra = sorted(src.rglob("*.dcm"))[0]
    (extra.parent / "late_arrival.dcm").write_bytes(extra.read_bytes())  # in the source, not in the job
    victim = _outputs(dst)[0]
    victim.unlink()
    code, lines = _check(cli, src, dst, planted)
    assert code == 1
    text = "\n".join(lines)
    assert "no record in the job" in text and "counts do not balance: 5 item(s) in, 4 out" in text
    assert f"{victim.relative_to(dst)}: recorded as done but missing" in text


def test_state_folder_is_scanned_for_values(job, cli) -> None:
    src, dst, planted = job
    with (dst / ".phiscrub" / "last-run.json").open("a") as fh:
        fh.write("MRN4471923\n")
    code, lines = _check(cli, src, dst, planted)
    assert code == 1 and any("last-run.json: holds a source value" in x for x in lines)


@pytest.mark.slow
def test_ocr_of_output_pixels_when_the_source_had_burned_in_text(cli, tmp_path: Path) -> None:
    """A source with a name burned into its pixels, de-identified by a policy that does not
    clean pixel data: the header is clean, the pixels are not, and only OCR can tell."""
    import cv2
    import numpy as np


    src = tmp_path / "in"
    planted, ct = _one_ct(src)
    ds = dcmread(ct)
    img8 = np.zeros((256, 256), np.uint8)
    cv2.putText(img8, "DAVIDSON DOUGLAS", (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.75, 255, 2)
    cv2.putText(img8, "MRN4471923", (8, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.75, 255, 2)
    img = img8.astype(np.uint16) * 16
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 256, 256, 16, 16, 15, 0
    for kw in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope"):
        if kw in ds:
            delattr(ds, kw)
    ds.PixelData = img.tobytes()
    ds.BurnedInAnnotation = "YES"
    ds.save_as(ct, enforce_file_format=True)
    dst = tmp_path / "out"
    header_only = tmp_path / "header-only.yaml"  # the default config cleans pixels
    header_only.write_text("options: [retain_longitudinal_modified_dates]\n")
    assert cli("deidentify", src, dst, "-q", "-c", header_only).exit_code == 0
    res = cli("verify", src, dst, "-c", header_only)
    assert res.exit_code == 1 and "OCR reads" in res.output and "1 OCR-checked" in res.output
    for v in planted.values:
        assert len(v) < 4 or v not in res.output
    # the same source with pixel cleaning on: the gate redacted it, and OCR finds nothing left
    cfg = tmp_path / "c.yaml"
    cfg.write_text("options: [clean_pixel_data, retain_longitudinal_modified_dates]\n")
    dst2 = tmp_path / "out2"
    assert cli("deidentify", src, dst2, "-q", "--config", cfg).exit_code == 0
    res = cli("verify", src, dst2, "--config", cfg)
    assert res.exit_code == 0 and "1 OCR-checked" in res.output, res.output


def test_slides_are_verified_and_reported(cli, tmp_path: Path) -> None:
    """A slide job: verify re-reads the slide with its format's own verifier, and a slide
    whose label came back is caught; the report's slide table lists the format."""
    from tests.wsi.slide_factory import make_aperio

    src = tmp_path / "in"
    src.mkdir()
    a = make_aperio(src / "Doe_Jane_biopsy.svs")
    dst = tmp_path / "out"
    assert cli("deidentify", src, dst, "-q", "-j", "1").exit_code == 0
    code, lines = _check(cli, src, dst, a.values + ["Doe_Jane"])
    assert code == 0 and lines == [], lines
    assert cli("report", dst).exit_code == 0
    assert ">aperio<" in (dst / ".phiscrub" / "report.html").read_text()
    slide = next(p for p in dst.iterdir() if p.suffix == ".svs")
    shutil_src = a.path.read_bytes()
    slide.write_bytes(shutil_src)  # the original put back under the output's name
    code, lines = _check(cli, src, dst, a.values + ["Doe_Jane"])
    assert code == 1 and any(x.startswith(slide.name + ":") for x in lines), lines


def test_an_annotation_naming_a_source_listed_after_it_is_found(cli, tmp_path: Path) -> None:
    """Every source's names are known before any output is read: an annotation listed first
    that names a folder listed after it is caught too."""
    from phiscrub.demo import make_study
    from tests.wsi import annotation_factory as ann

    src = tmp_path / "in"
    planted, _ = make_study(src / "zimmermann_case", n_ct=1, n_mr=0)
    (src / "aaa.geojson").write_bytes(ann.geojson())
    dst = tmp_path / "out"
    assert cli("deidentify", src, dst, "-q", "-j", "1").exit_code == 0
    code, lines = _check(cli, src, dst, planted.values)
    assert code == 0 and lines == [], lines
    (out,) = [p for p in dst.rglob("*.geojson") if ".phiscrub" not in p.parts]
    out.write_bytes(out.read_bytes().replace(b'"type"', b'"note": "zimmermann_case", "type"', 1))
    code, lines = _check(cli, src, dst, planted.values)
    assert code == 1 and lines == [f"{out.relative_to(dst)}: holds a source file or folder name"], lines


def test_the_verdict_is_the_same_whatever_the_number_of_threads(job, cli) -> None:
    """Items are re-read concurrently; their findings are merged in source order."""
    from phiscrub.keys import load_key
    from phiscrub.pipeline.verify_job import verify_job
    from phiscrub.policy.config import from_mapping

    src, dst, planted = job
    for out in _outputs(dst)[:3]:  # three outputs, each with a value put back
        ds = dcmread(out)
        ds.StudyDescription = "follow-up for Davidson"
        ds.StudyInstanceUID = f"2.25.{len(str(out))}"
        ds.save_as(out, enforce_file_format=True)
    keys = load_key(None)  # the one the cli fixture's job ran with
    one = verify_job(src, dst, from_mapping({}), keys, ocr=False, threads=1)
    many = verify_job(src, dst, from_mapping({}), keys, ocr=False, threads=8)
    assert len(one.problems) >= 3 and one.problems == many.problems and one.counts == many.counts


def test_a_state_folder_left_in_dst_by_another_run_is_named_once_and_scanned(cli, tmp_path: Path) -> None:
    src, dst, planted, res = make_job(cli, tmp_path, "--state", str(tmp_path / "elsewhere"))
    assert res.exit_code == 0, res.output
    assert not (dst / ".phiscrub").exists()
    old = dst / ".phiscrub"
    old.mkdir()
    (old / "audit.jsonl").write_text("{}\n")
    (old / "last-run.json").write_text("MRN4471923\n")
    code, lines = _check(cli, src, dst, planted, "--state", str(tmp_path / "elsewhere"))
    assert code == 1
    assert lines == [".phiscrub: a state folder this job did not write (its state is in --state): left from another run",
                     ".phiscrub/last-run.json: holds a source value or file name"], lines


# --- verify as a gate: a clean job passes, one planted value fails, nothing is said twice --


def _rel_of(dst: Path, path: Path) -> str:
    return path.relative_to(dst).as_posix()


def _make(tmp_path: Path, **kw):
    from phiscrub.demo import make_study

    src = tmp_path / "in"
    planted, paths = make_study(src, n_ct=kw.pop("n_ct", 2), n_mr=kw.pop("n_mr", 1))
    return src, planted.values, paths


def test_references_outside_the_job_are_a_note_and_one_to_a_job_instance_without_output_a_problem(
        cli, tmp_path: Path) -> None:
    """An SR that cites a prior never exported: counted once, as information. An SR that
    cites an instance of the same job that has no output (quarantined): a problem."""
    src, planted, paths = _make(tmp_path)
    sr = next(p for p in paths if "_SR_" in p.name)
    mr = next(p for p in paths if "_MR_" in p.name)
    ds = dcmread(sr)
    cited = [it for it in ds.ContentSequence if "ReferencedSOPSequence" in it]
    assert len(cited) >= 2
    cited[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1234567890"
    ds.save_as(sr, enforce_file_format=True)
    dst = tmp_path / "out"
    assert cli("deidentify", src, dst, "-q").exit_code == 0
    res = cli("verify", src, dst, "--no-ocr")
    assert res.exit_code == 0, res.output
    assert "note: 1 reference(s) to 1 instance(s) outside this job (not checked)" in res.output
    # the MR damaged so that it is quarantined, and cited by the SR
    mr_sop = str(dcmread(mr).SOPInstanceUID)
    ds = dcmread(mr)
    del ds.StudyInstanceUID
    ds.save_as(mr, enforce_file_format=True)
    ds = dcmread(sr)
    [it for it in ds.ContentSequence if "ReferencedSOPSequence" in it][1].ReferencedSOPSequence[0] \
        .ReferencedSOPInstanceUID = mr_sop
    ds.save_as(sr, enforce_file_format=True)
    dst2 = tmp_path / "out2"
    assert cli("deidentify", src, dst2, "-q").exit_code == 1  # the MR is quarantined
    code, lines = _check(cli, src, dst2, planted)
    assert code == 1
    assert len(lines) == 1 and lines[0].endswith(
        "a Referenced SOP Instance UID points at an instance of this job that has no output"), lines


def test_source_names_are_matched_as_names_not_inside_phiscrubs_own_words(cli, tmp_path: Path) -> None:
    """A damaged source named with an ordinary word: its quarantine reason ('truncated: ...')
    is phiscrub's, not the file's name. The name itself written into the state is found."""
    from pydicom.uid import generate_uid

    src, planted, paths = _make(tmp_path)
    ds = dcmread(paths[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(src / "truncated.dcm", enforce_file_format=True)
    data = (src / "truncated.dcm").read_bytes()
    (src / "truncated.dcm").write_bytes(data[: len(data) - 1000])  # cut inside the pixel data
    dst = tmp_path / "out"
    res = cli("deidentify", src, dst, "-q")
    assert res.exit_code == 1 and "truncated" in res.output  # quarantined, as it should be
    code, lines = _check(cli, src, dst, planted)
    assert code == 0 and lines == [], lines
    with (dst / ".phiscrub" / "last-run.json").open("a") as fh:
        fh.write('\n{"note": "see truncated.dcm"}\n')
    code, lines = _check(cli, src, dst, planted)
    assert code == 1 and lines == [".phiscrub/last-run.json: holds a source value or file name"], lines


def test_a_value_that_is_also_a_word_of_the_state_schema(cli, tmp_path: Path) -> None:
    """A station and a department called DEFAULT: the state's schema says DEFAULT too, its
    rows do not. The value written into a row is found."""
    import sqlite3

    src, planted, paths = _make(tmp_path)
    for p in paths:
        ds = dcmread(p)
        ds.StationName = "DEFAULT"
        ds.InstitutionalDepartmentName = "DEFAULT"
        ds.save_as(p, enforce_file_format=True)
    dst = tmp_path / "out"
    assert cli("deidentify", src, dst, "-q").exit_code == 0
    db = dst / ".phiscrub" / "state.sqlite"
    assert b"DEFAULT" in db.read_bytes()  # the schema's word
    code, lines = _check(cli, src, dst, planted)
    assert code == 0 and lines == [], lines
    con = sqlite3.connect(db)
    con.execute("UPDATE items SET relpath = relpath || ' DEFAULT' WHERE rowid = (SELECT MIN(rowid) FROM items)")
    con.commit()
    con.close()
    code, lines = _check(cli, src, dst, planted)
    assert code == 1 and lines == [".phiscrub/state.sqlite: holds a source value or file name"], lines


def test_a_key_that_matches_nothing_is_said_in_one_line(job, cli) -> None:
    src, dst, planted = job
    res = cli("verify", src, dst, "--no-ocr", env={"PHISCRUB_KEY": "another-key-0123456789abcdef"})
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x]
    assert res.exit_code == 1
    assert lines == ["the key does not match this job: its audit log was signed with another key"
                     " (give the job's --key-file or $PHISCRUB_KEY)"], lines


def test_duplicates_are_counted_apart_and_outputs_are_files(cli, tmp_path: Path) -> None:
    """An identical copy (no output of its own) and a re-sent copy with other content
    (quarantined by design): a note, not a problem; the count is of the files that exist."""
    src, planted, paths = _make(tmp_path)
    ct = paths[0]
    (src / "resent").mkdir()
    (src / "resent" / "copy.dcm").write_bytes(ct.read_bytes())
    ds = dcmread(ct)
    ds.SeriesDescription = "corrected"
    ds.save_as(src / "resent" / "other.dcm", enforce_file_format=True)
    dst = tmp_path / "out"
    cli("deidentify", src, dst, "-q")
    n_files = len(_outputs(dst))
    res = cli("verify", src, dst, "--no-ocr")
    assert res.exit_code == 0, res.output
    assert (f"4 done, 1 quarantined, 0 failed, 0 dropped, 1 duplicate; {n_files} output(s) re-read: 0 problem(s)"
            in res.output), res.output
    assert n_files == 4
    assert "note: duplicates: 1 identical copy(ies) of an instance (no output of their own), 1 copy(ies) with" \
           " other content quarantined" in res.output


def test_each_planted_value_is_one_line_naming_the_output_and_the_tag(job, cli) -> None:
    """Values the transform's own policy would not call identifying, put back into three
    outputs: a name in an attribute the table does not list, the study date as Instance
    Creation Date, the patient ID in a private element. One line each, never the value."""
    src, dst, planted = job
    outs = [p for p in _outputs(dst) if dcmread(p, stop_before_pixels=True).Modality in ("CT", "MR")]
    a, b, c = outs[:3]
    ds = dcmread(a)
    ds.add_new(0x00181250, "SH", "Davidson")  # Receive Coil Name: not in Table E.1-1
    ds.save_as(a, enforce_file_format=True)
    ds = dcmread(b)
    ds.InstanceCreationDate = "20210304"  # the source's study date, not shifted
    ds.save_as(b, enforce_file_format=True)
    ds = dcmread(c)
    ds.add_new(0x00291010, "LO", "x MRN4471923")  # a private element
    ds.save_as(c, enforce_file_format=True)
    code, lines = _check(cli, src, dst, planted)
    assert code == 1
    assert sorted(lines) == sorted([
        f"{_rel_of(dst, a)}: a source name still present in the header, text field ReceiveCoilName (0018,1250)",
        f"{_rel_of(dst, b)}: a source date still present in the header, date field InstanceCreationDate (0008,0012)",
        f"{_rel_of(dst, c)}: a source ID still present in the header, text field (0029,1010)",
    ]), lines


def test_the_demo_job_passes_and_fails_with_one_value_put_back(cli, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    assert cli("demo", work).exit_code == 0
    key = work / "demo.key"
    src, dst = work / "input", work / "output"
    res = cli("verify", src, dst, "--key-file", key)
    assert res.exit_code == 0 and "problem(s)" in res.output, res.output
    out = next(p for p in _outputs(dst) if dcmread(p, stop_before_pixels=True).Modality == "MR")
    ds = dcmread(out)
    ds.StudyDescription = "MR for Davidson"
    ds.save_as(out, enforce_file_format=True)
    res = cli("verify", src, dst, "--key-file", key, "--no-ocr")
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x and not x.startswith("note:")]
    assert res.exit_code == 1
    assert lines == [f"{_rel_of(dst, out)}: a source name still present in the header, text field"
                     " StudyDescription (0008,1030)"], lines


def test_pydicoms_test_files_pass_and_fail_with_one_value_put_back(cli, tmp_path: Path) -> None:
    """Files phiscrub did not make: some are quarantined as broken, some are duplicates,
    several cite instances that are not there; none of that is a problem."""
    from tests.conftest import TEST_FILES

    dst = tmp_path / "out"
    cli("deidentify", TEST_FILES, dst, "-q")
    res = cli("verify", TEST_FILES, dst, "--no-ocr")
    assert res.exit_code == 0, res.output
    assert "0 problem(s)" in res.output and "outside this job" in res.output
    src = dcmread(TEST_FILES / "CT_small.dcm", stop_before_pixels=True)
    out = next(p for p in _outputs(dst)
               if str(dcmread(p, stop_before_pixels=True).get("ImageType", "")) == str(src.ImageType)
               and dcmread(p, stop_before_pixels=True).get("Rows") == src.Rows
               and str(dcmread(p, stop_before_pixels=True).get("SliceLocation", "")) == str(src.SliceLocation))
    ds = dcmread(out)
    ds.add_new(0x00181250, "SH", "CompressedSamples")  # the patient's family name
    ds.save_as(out, enforce_file_format=True)
    res = cli("verify", TEST_FILES, dst, "--no-ocr")
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x and not x.startswith("note:")]
    assert res.exit_code == 1
    assert len(lines) >= 1 and all("ReceiveCoilName (0018,1250)" in x for x in lines), lines
    assert "compressedsamples" not in res.output.lower()


@pytest.mark.slow
def test_ocr_reads_every_image_the_pixel_policy_scans(cli, tmp_path: Path) -> None:
    """An ultrasound that does not say BurnedInAnnotation YES is still scanned by the pixel
    stage under clean_pixel_data (its modality carries text): verify reads it too. Text
    burned into its output afterwards (a pixel stage that missed it) is found."""
    import cv2
    import numpy as np


    src = tmp_path / "in"
    _, us = _one_ct(src)
    ds = dcmread(us)
    ds.Modality = "US"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"
    img = np.zeros((256, 256), np.uint8)
    cv2.circle(img, (128, 140), 60, 90, -1)  # anatomy, no text
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 256, 256, 8, 8, 7, 0
    for kw in ("WindowCenter", "WindowWidth", "RescaleIntercept", "RescaleSlope", "BurnedInAnnotation"):
        if kw in ds:
            delattr(ds, kw)
    ds.PixelData = img.tobytes()
    ds.save_as(us, enforce_file_format=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("options: [clean_pixel_data, retain_longitudinal_modified_dates]\n")
    dst = tmp_path / "out"
    assert cli("deidentify", src, dst, "-q", "--config", cfg).exit_code == 0
    res = cli("verify", src, dst, "--config", cfg)
    assert res.exit_code == 0 and "1 OCR-checked" in res.output, res.output
    (out,) = _outputs(dst)
    ods = dcmread(out)
    burned = np.frombuffer(ods.PixelData, np.uint8).reshape(256, 256).copy()
    cv2.putText(burned, "DAVIDSON DOUGLAS", (8, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.75, 255, 2)
    ods.PixelData = burned.tobytes()
    ods.save_as(out, enforce_file_format=True)
    res = cli("verify", src, dst, "--config", cfg)
    assert res.exit_code == 1 and "OCR reads" in res.output, res.output
    assert "davidson" not in res.output.lower()


def _one_ct(src: Path):
    """A demo study cut down to its one CT image: (planted values, its path)."""
    from phiscrub.demo import make_study

    planted, paths = make_study(src, n_ct=1, n_mr=0)
    ct = next(p for p in paths if "_CT_" in p.name)
    for p in paths:
        if p != ct:
            p.unlink()
    return planted, ct

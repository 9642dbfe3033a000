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
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x]
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

    from phiscrub.demo import make_study

    src = tmp_path / "in"
    planted, paths = make_study(src, n_ct=1, n_mr=0)
    ct = next(p for p in paths if "_CT_" in p.name)
    for p in paths:
        if p != ct:
            p.unlink()
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
    assert cli("deidentify", src, dst, "-q").exit_code == 0
    res = cli("verify", src, dst)
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

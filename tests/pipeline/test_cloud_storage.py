"""gs:// and s3:// through fsspec against gcp-storage-emulator and moto_server on loopback:
bucket to bucket and folder to bucket, with every output object (bytes and key) scanned
for every planted value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phiscrub.pipeline.objectstore import filesystem
from tests.conftest import scan_tree
from tests.pipeline.corpus import make_corpus
from tests.pipeline.servers import cloud_env, gcs_emulator, s3_server  # noqa: F401 - fixtures
from tests.wsi.slide_factory import make_aperio

pytestmark = pytest.mark.slow


def _download(fs, root: str, to: Path) -> list[str]:
    keys = sorted(fs.find(root))
    for k in keys:
        p = to / k[len(root) + 1:]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(fs.cat_file(k))
    return keys


def test_gs_to_s3_with_a_slide(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    local = tmp_path / "Quorvath_export"
    corpus = make_corpus(local, 24, per_study=8, seed=3)
    slide = make_aperio(local / "Quorvath_biopsy.svs")
    gcs, s3 = filesystem("gs"), filesystem("s3")
    gcs.mkdir("src-bucket")
    s3.mkdir("dst-bucket")
    for p in sorted(local.rglob("*")):
        if p.is_file():
            gcs.pipe_file(f"src-bucket/export/{p.relative_to(local).as_posix()}", p.read_bytes())
    res = cli("deidentify", "gs://src-bucket/export", "s3://dst-bucket/deid", "-q", "-j", "2", "--state", tmp_path / "state")
    assert res.exit_code == 0, res.output
    keys = _download(s3, "dst-bucket/deid", tmp_path / "got")
    assert len([k for k in keys if k.endswith(".dcm")]) == 24
    assert len([k for k in keys if k.endswith(".svs")]) == 1  # fetched to a temporary file, uploaded verified
    assert scan_tree(tmp_path / "got", corpus.planted + slide.values + ["Quorvath_export", "biopsy"]) == {}
    assert scan_tree(tmp_path / "state", corpus.planted + ["Quorvath", "src-bucket/export"]) == {}
    # a rerun resumes from the state: the bucket's generations are unchanged
    res = cli("deidentify", "gs://src-bucket/export", "s3://dst-bucket/deid", "-q", "-j", "2", "--state", tmp_path / "state")
    assert res.exit_code == 0 and "25 item(s) already done" in res.output
    # a rewritten object (new generation) is a new item
    first = next(k for k in sorted(gcs.find("src-bucket/export")) if k.endswith(".dcm"))
    gcs.pipe_file(first, gcs.cat_file(first))
    res = cli("deidentify", "gs://src-bucket/export", "s3://dst-bucket/deid", "-q", "-j", "1", "--state", tmp_path / "state")
    assert res.exit_code == 0 and "24 item(s) already done" in res.output and "1 done" in res.output


def test_a_bucket_slide_takes_its_patients_offset_by_file_name(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    """wsi.patients maps a slide by its file name: an object fetched from a bucket keeps its
    name in the temporary folder, so the mapping holds there too (the offset is the one the
    DICOM path gives that patient)."""
    import datetime as dt

    import tifffile
    from pydicom.dataset import Dataset

    from phiscrub.dicom.identity import patient_identity
    from phiscrub.keys import KeyRing

    slide = make_aperio(tmp_path / "S-777.svs", when="2020:05:06 07:08:09")
    gcs, s3 = filesystem("gs"), filesystem("s3")
    gcs.mkdir("map-src")
    s3.mkdir("map-dst")
    gcs.pipe_file("map-src/in/S-777.svs", slide.path.read_bytes())
    csv = tmp_path / "patients.csv"
    csv.write_text("slide,patient\nS-777.svs,MRN-BUCKET-1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"wsi:\n  patients: {csv}\n")
    key = "bucket-map-key-0123456789abcdef"
    res = cli("deidentify", "gs://map-src/in", "s3://map-dst/out", "-q", "-j", "1", "--state", tmp_path / "state",
              "--config", cfg, env={"PHISCRUB_KEY": key})
    assert res.exit_code == 0, res.output
    got = [k for k in _download(s3, "map-dst/out", tmp_path / "got") if k.endswith(".svs")]
    assert len(got) == 1
    with tifffile.TiffFile(next((tmp_path / "got").rglob("*.svs"))) as tf:
        stamp = tf.pages[0].tags[306].value
    ds = Dataset()
    ds.PatientID = "MRN-BUCKET-1"
    offset = KeyRing(key.encode()).date_offset(patient_identity(ds), -3650, -1)
    assert dt.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").date() == dt.date(2020, 5, 6) + dt.timedelta(days=offset)


def test_folder_to_gs(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "Quorvath_Annelise"
    corpus = make_corpus(src, 12, per_study=6, seed=4)
    gcs = filesystem("gs")
    gcs.mkdir("out-bucket")
    res = cli("deidentify", src, "gs://out-bucket/run1", "-q", "-j", "2", "--state", tmp_path / "state")
    assert res.exit_code == 0, res.output
    keys = _download(gcs, "out-bucket/run1", tmp_path / "got")
    assert len(keys) == 12 and all(k.endswith(".dcm") for k in keys)
    assert scan_tree(tmp_path / "got", corpus.planted + ["Quorvath_Annelise"]) == {}
    recs = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert sorted(r["status"] for r in recs if r.get("event") == "item") == ["done"] * 12


def test_bucket_dst_needs_a_state_folder(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    make_corpus(tmp_path / "in", 1)
    res = cli("deidentify", tmp_path / "in", "gs://out-bucket/x", "-q")
    assert res.exit_code == 2 and "--state" in res.output


def test_studies_selection_from_a_bucket(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    """--studies on a bucket source: each object's header is read in blocks to learn its
    study; only the chosen study is de-identified."""
    from pydicom import dcmread

    local = tmp_path / "Quorvath_sel"
    corpus = make_corpus(local, 8, per_study=4, seed=5)
    gcs = filesystem("gs")
    gcs.mkdir("sel-bucket")
    for p in corpus.files:
        gcs.pipe_file(f"sel-bucket/in/{p.relative_to(local).as_posix()}", p.read_bytes())
    chosen = sorted(corpus.studies)[0]
    (tmp_path / "studies.txt").write_text(f"{chosen}\n")
    res = cli("deidentify", "gs://sel-bucket/in", tmp_path / "out", "-q", "-j", "1", "--studies", tmp_path / "studies.txt")
    assert res.exit_code == 0, res.output
    assert "4 item(s) of other studies not selected" in res.output
    outs = [dcmread(p) for p in (tmp_path / "out").rglob("*.dcm")]
    assert len(outs) == 4 and len({str(d.StudyInstanceUID) for d in outs}) == 1

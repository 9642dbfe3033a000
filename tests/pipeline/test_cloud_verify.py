"""`verify` and `report` on jobs whose destination is a bucket, and the confirmation of
every upload, against gcp-storage-emulator and moto_server on loopback.

Outputs are re-read from the bucket itself; tampering done in the bucket after the job is
found; no message and no byte of the report holds a planted value."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import pytest
from pydicom import dcmread

from phiscrub.demo import make_study
from phiscrub.errors import TransientError
from phiscrub.pipeline.objectstore import ObjectSink, filesystem
from tests.conftest import scan_tree
from tests.pipeline.corrupting_store import InjectingFS
from tests.pipeline.jobs import rules_config
from tests.pipeline.servers import cloud_env, gcs_emulator, s3_server  # noqa: F401 - fixtures
from tests.wsi.slide_factory import make_aperio

pytestmark = pytest.mark.slow


def _upload(fs, local: Path, prefix: str) -> None:
    for p in sorted(local.rglob("*")):
        if p.is_file():
            fs.pipe_file(f"{prefix}/{p.relative_to(local).as_posix()}", p.read_bytes())


def _verify(cli, planted: list[str], *args) -> tuple[int, list[str], str]:
    res = cli("verify", *args, "--no-ocr")
    for v in planted:  # the verdict never repeats a value
        if len(v) >= 4:
            assert v.lower() not in res.output.lower(), v
    lines = [x for x in res.output.splitlines() if x and "problem(s)" not in x]
    return res.exit_code, lines, res.output


def test_verify_a_bucket_to_bucket_job_and_tampering_in_the_bucket(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    local = tmp_path / "Davidson_export"
    planted, _ = make_study(local, n_ct=2, n_mr=1)
    slide = make_aperio(local / "Davidson_biopsy.svs")
    values = planted.values + slide.values + ["Davidson_export", "Davidson_biopsy"]
    gcs, s3 = filesystem("gs"), filesystem("s3")
    gcs.mkdir("verify-src")
    s3.mkdir("verify-dst")
    _upload(gcs, local, "verify-src/export")
    state = tmp_path / "state"
    job = ("gs://verify-src/export", "s3://verify-dst/deid")
    res = cli("deidentify", *job, "-q", "-j", "2", "--state", state)
    assert res.exit_code == 0, res.output

    # a clean job: 4 DICOM outputs and the slide, each re-read from the bucket
    code, lines, text = _verify(cli, values, *job, "--state", state)
    assert code == 0 and lines == [], text
    assert "5 done, 0 quarantined, 0 failed, 0 dropped; 5 output(s) re-read: 0 problem(s)" in text
    assert not list(tmp_path.glob("phiscrub-fetch-*"))

    # a bucket DST has no state folder of its own: --state is required
    res = cli("verify", *job, "--no-ocr")
    assert res.exit_code == 2 and "--state" in res.output

    keys = sorted(k for k in s3.find("verify-dst/deid"))
    outputs = {k[len("verify-dst/deid/"):]: k for k in keys}
    assert len(outputs) == 5 and sum(r.endswith(".svs") for r in outputs) == 1

    # (a) objects the job never wrote, one of them named after the patient
    s3.pipe_file("verify-dst/deid/extra/stray.bin", b"x")
    s3.pipe_file("verify-dst/deid/Davidson_notes.txt", b"x")
    code, lines, text = _verify(cli, values, *job, "--state", state)
    assert code == 1
    assert "extra/stray.bin: not an output this job recorded" in lines, lines
    assert any(x.startswith("path ") and "the path holds a source value or file name" in x for x in lines), lines
    assert sum("not an output this job recorded" in x for x in lines) == 2, lines
    s3.rm_file("verify-dst/deid/extra/stray.bin")
    s3.rm_file("verify-dst/deid/Davidson_notes.txt")

    # (b) an output overwritten in the bucket with a source value put back
    ct_rel = next(r for r, k in outputs.items() if r.endswith(".dcm")
                  and dcmread(io.BytesIO(s3.cat_file(k)), stop_before_pixels=True).Modality == "CT")
    original = s3.cat_file(outputs[ct_rel])
    ds = dcmread(io.BytesIO(original))
    ds.StudyDescription = "follow-up for Davidson"
    ds.add_new(0x00204000, "LT", "MRN4471923")  # ImageComments: the patient ID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    s3.pipe_file(outputs[ct_rel], buf.getvalue())
    code, lines, text = _verify(cli, values, *job, "--state", state)
    assert code == 1
    assert any(x.startswith(ct_rel) and "header" in x for x in lines), lines
    assert any(x.startswith(ct_rel) and "text field" in x for x in lines), lines
    assert all(x.startswith(ct_rel) for x in lines), lines
    s3.pipe_file(outputs[ct_rel], original)

    # (c) an output deleted from the bucket
    s3.rm_file(outputs[ct_rel])
    code, lines, text = _verify(cli, values, *job, "--state", state)
    assert code == 1 and f"{ct_rel}: recorded as done but missing" in lines, lines
    assert "4 output(s) re-read" in text
    s3.pipe_file(outputs[ct_rel], original)

    # the slide, re-read from the bucket by its format's verifier: the original put back is caught
    svs_rel = next(r for r in outputs if r.endswith(".svs"))
    s3.pipe_file(outputs[svs_rel], slide.path.read_bytes())
    code, lines, text = _verify(cli, values, *job, "--state", state)
    assert code == 1 and lines and all(x.startswith(svs_rel + ":") for x in lines), lines


def test_folder_to_gs_verify_and_report(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    cfg = rules_config(tmp_path)
    src = tmp_path / "Davidson_in"
    planted, _ = make_study(src, n_ct=2, n_mr=1)
    values = planted.values + ["Davidson_in"]
    gcs = filesystem("gs")
    gcs.mkdir("report-bucket")
    state = tmp_path / "state"
    dst = "gs://report-bucket/run1"
    res = cli("deidentify", src, dst, "-q", "-j", "2", "--state", state, "--config", cfg)
    assert res.exit_code == 0, res.output
    code, lines, text = _verify(cli, values, src, dst, "--state", state, "--config", cfg)
    assert code == 0 and lines == [], text
    assert "4 output(s) re-read" in text

    res = cli("report", dst)
    assert res.exit_code == 2 and "--state" in res.output
    res = cli("report", dst, "--state", state)
    assert res.exit_code == 0, res.output
    html = (state / "report.html").read_text()
    assert "<b>4</b>done" in html and ">CT<" in html and ">MR<" in html and ">SR<" in html
    # the thumbnails are the de-identified CT outputs, read from the bucket
    ct = sorted(k[len("report-bucket/run1/"):] for k in gcs.find("report-bucket/run1")
                if dcmread(io.BytesIO(gcs.cat_file(k)), stop_before_pixels=True).Modality == "CT")
    assert len(ct) == 2 and "2 output(s) with redactions; 2 shown." in html
    assert html.count("data:image/png;base64,") == 2
    assert all(f"<figcaption>{rel}<br>2 box(es)" in html for rel in ct)
    assert "not renderable" not in html
    (tmp_path / "scan").mkdir()
    (tmp_path / "scan" / "r.html").write_text(html)
    assert scan_tree(tmp_path / "scan", values) == {}
    # the report written into the state folder holds no value either: verify still passes
    code, lines, text = _verify(cli, values, src, dst, "--state", state, "--config", cfg)
    assert code == 0 and lines == [], text


def test_slides_in_a_bucket_mirax_and_ndpi(cloud_env, cli, tmp_path: Path) -> None:  # noqa: F811
    """A MIRAX output is a file beside a folder of objects: all of them are fetched for the
    check. NDPI is read by its extension: fetched copies keep it. A single-object SRC works."""
    from tests.wsi.mrxs_factory import make_mrxs
    from tests.wsi.slide_factory import make_ndpi

    src = tmp_path / "in"
    src.mkdir()
    make_mrxs(src, "Doe_Jane_mrxs")
    ndpi = make_ndpi(src / "Doe_Jane_scan.ndpi")
    gcs = filesystem("gs")
    gcs.mkdir("slides-bucket")
    job = (src, "gs://slides-bucket/out")
    state = tmp_path / "state"
    assert cli("deidentify", *job, "-q", "-j", "1", "--state", state).exit_code == 0
    code, lines, text = _verify(cli, ndpi.values + ["Doe_Jane"], *job, "--state", state)
    assert code == 0 and lines == [] and "2 output(s) re-read" in text, text
    data = sorted(k for k in gcs.find("slides-bucket/out") if k.endswith(".dat"))
    assert data  # the MIRAX companion folder's objects
    gcs.rm_file(data[-1])
    code, lines, text = _verify(cli, ndpi.values + ["Doe_Jane"], *job, "--state", state)
    assert code == 1 and lines and all(x.split(":")[0].endswith(".mrxs") for x in lines), lines

    gcs.pipe_file("slides-bucket/src/Doe_Jane_scan.ndpi", ndpi.path.read_bytes())
    state2 = tmp_path / "state2"
    assert cli("deidentify", "gs://slides-bucket/src", "gs://slides-bucket/out2", "-q", "-j", "1", "--state", state2).exit_code == 0
    code, lines, text = _verify(cli, ndpi.values, "gs://slides-bucket/src/Doe_Jane_scan.ndpi", "gs://slides-bucket/out2",
                                "--state", state2)
    assert code == 0 and lines == [] and "1 output(s) re-read" in text, text


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_uploads_are_confirmed(cloud_env, scheme: str, tmp_path: Path) -> None:  # noqa: F811
    bucket = f"confirm-{scheme}"
    filesystem(scheme).mkdir(bucket)
    sink = ObjectSink(f"{scheme}://{bucket}/out")
    fs = sink.fs
    checked: list[bytes] = []
    data = b"DICM" + bytes(range(256)) * 40
    slide = tmp_path / "slide.svs"
    slide.write_bytes(b"II*\x00" + bytes(range(200)) * 300)

    # a normal write: checked, stored, confirmed
    uri = sink.write_checked("a/one.dcm", data, checked.append)
    assert uri == f"{scheme}://{bucket}/out/a/one.dcm" and checked == [data]
    assert fs.cat_file(f"{bucket}/out/a/one.dcm") == data
    sink.put_file("a/slide.svs", slide)
    assert fs.cat_file(f"{bucket}/out/a/slide.svs") == slide.read_bytes()

    # the store holds other bytes than the checked ones: deleted, and an error raised
    for hide in (False, True):  # compared with the store's checksum, or read back
        sink.fs = InjectingFS(fs, corrupt=True, hide_checksums=hide)
        with pytest.raises(TransientError) as e:
            sink.write_checked("b/two.dcm", data, checked.append)
        assert checked[-1] == data  # the check ran on the buffer, before the PUT
        # GCS's md5Hash is final; an S3 ETag that differs may be a KMS one: read back to be sure
        assert ("reported by the store" if scheme == "gs" and not hide else "read back") in str(e.value)
        assert "two.dcm" not in str(e.value) and bucket not in str(e.value)
        fs.invalidate_cache()
        assert not fs.exists(f"{bucket}/out/b/two.dcm")
        with pytest.raises(TransientError):
            sink.put_file("b/slide.svs", slide)
        fs.invalidate_cache()
        assert not fs.exists(f"{bucket}/out/b/slide.svs")

    # no checksum reported and nothing damaged: read back, equal, kept
    sink.fs = InjectingFS(fs, corrupt=False, hide_checksums=True)
    sink.write_checked("c/three.dcm", data, None)
    sink.put_file("c/slide.svs", slide)
    assert hashlib.md5(fs.cat_file(f"{bucket}/out/c/three.dcm")).digest() == hashlib.md5(data).digest()
    assert fs.cat_file(f"{bucket}/out/c/slide.svs") == slide.read_bytes()


def test_a_job_whose_uploads_arrive_damaged_publishes_nothing(cloud_env, cli, tmp_path: Path,  # noqa: F811
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the runner: the retried uploads all arrive damaged, each is deleted, and the
    item is not done (a rerun tries again)."""
    monkeypatch.setenv("PHISCRUB_PLUGINS", "tests.pipeline.corrupting_store")
    src = tmp_path / "Davidson_in"
    planted, paths = make_study(src, n_ct=1, n_mr=0)
    for p in paths[1:]:
        p.unlink()
    gcs = filesystem("gs")
    gcs.mkdir("damaged-bucket")
    state = tmp_path / "state"
    quarantine = tmp_path / "quarantine"
    res = cli("deidentify", src, "gsbad://damaged-bucket/run", "-q", "-j", "1", "--state", state,
              "--quarantine", quarantine)
    assert res.exit_code == 1, res.output
    # storage trouble is a failure a rerun retries, not an unsafe source: nothing quarantined
    assert not quarantine.exists() or list(quarantine.iterdir()) == []
    gcs.invalidate_cache()
    assert gcs.find("damaged-bucket/run") == []
    recs = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    items = [r for r in recs if r.get("event") == "item"]
    assert len(items) == 1, items
    rec = items[0]
    assert rec["status"] == "failed" and rec["category"] == "transient", rec
    assert rec["reason"].startswith("storage unavailable after 5 attempt(s)")
    assert "upload not confirmed: the stored object differs from the checked bytes" in rec["reason"]
    assert not any(len(v) >= 4 and v in rec["reason"] for v in planted.values)
    con = sqlite3.connect(state / "state.sqlite")
    try:  # each retry PUT the checked bytes again, and each arrived damaged
        assert con.execute("SELECT status, attempts FROM items").fetchall() == [(rec["status"], 5)]
    finally:
        con.close()


def test_a_multipart_upload_is_confirmed_from_its_etag_without_reading_it_back(
        cloud_env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A slide uploaded to S3 in parts: the ETag moto computes ('<md5 of part md5s>-<n>') is
    computed from the local file too, and nothing is read back; a damaged multipart upload
    still falls back to reading back, and is deleted."""
    from phiscrub.pipeline import objectcheck, objectstore

    monkeypatch.setattr(objectstore, "S3_PART", 5 << 20)  # S3's smallest part: a small test file
    filesystem("s3").mkdir("multipart")
    sink = ObjectSink("s3://multipart/out")
    fs = sink.fs
    slide = tmp_path / "slide.svs"
    slide.write_bytes(b"II*\x00" + bytes(range(251)) * (11 * 4177))  # 11 MiB and a bit: 3 parts
    read_back = []
    real_read = objectcheck.md5_of_object
    monkeypatch.setattr(objectcheck, "md5_of_object", lambda *a: read_back.append(a) or real_read(*a))

    sink.put_file("a/slide.svs", slide)
    etag = fs.info("multipart/out/a/slide.svs")["ETag"].strip('"')
    assert etag.endswith("-3") and etag == objectcheck.file_digests(slide, 5 << 20)[1]
    assert read_back == []
    assert hashlib.md5(fs.cat_file("multipart/out/a/slide.svs")).digest() == hashlib.md5(slide.read_bytes()).digest()

    sink.fs = InjectingFS(fs, corrupt=True)  # the same parts, its last byte flipped
    with pytest.raises(TransientError) as e:
        sink.put_file("b/slide.svs", slide)
    assert "read back" in str(e.value) and len(read_back) == 1
    fs.invalidate_cache()
    assert not fs.exists("multipart/out/b/slide.svs")

"""`phiscrub serve` over real HTTP on loopback: tokens required, an upload round trip whose
response holds no planted value, bad input answered 4xx (never 500), Prometheus metrics,
JSON log lines in Cloud Logging's shape with the trace and without PHI, an async job with
Healthcare-API-style counters, and the review queue's reject."""

from __future__ import annotations

import json
import socket
import time

import pydicom
import pytest

from tests.conftest import scan_tree
from tests.pipeline.corpus import make_corpus
from tests.service.serve import TOKEN, serve

MAX = 2_000_000
pytestmark = pytest.mark.slow  # a server process per module (about 8 s)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("svc-api")
    with serve(work, {"PHISCRUB_SERVE_MAX_BYTES": str(MAX), "PHISCRUB_SERVE_JOB_ROOTS": str(work / "jobs")}) as s:
        yield s


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "Quorvath_export", 6, per_study=3, seed=5)


def _needles(corpus) -> list[str]:
    return corpus.planted + [p.stem for p in corpus.files] + ["Quorvath_export"]


def _scan_bytes(blob: bytes, needles: list[str]) -> list[str]:
    low = blob.lower()
    return [n for n in needles if len(n) >= 4 and (n.lower().encode() in low or n.lower().encode("utf-16-le") in low)]


def test_a_request_without_a_token_is_refused(server) -> None:
    anon, wrong = server.client(token=None), server.client(token="not-the-token-0000000000")
    for c in (anon, wrong):
        for method, path in (("POST", "/v1/deidentify"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/" + "0" * 32),
                             ("POST", "/"), ("POST", "/v1/pubsub"), ("GET", "/metrics"), ("GET", "/v1/review"),
                             ("POST", "/v1/review/abc/release"), ("GET", "/v1/policies")):
            r = c.request(method, path, content=b"x" * 10)
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json() == {"error": "a valid bearer token is required"}
            assert r.headers["www-authenticate"].startswith("Bearer")
        page = c.get("/")
        assert page.status_code == 401 and "Sign in" in page.text and "Review queue" not in page.text
    assert anon.get("/healthz").status_code == 200
    # a token in another scheme is no bearer token
    assert server.client(token=None).get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert server.client().get("/metrics").status_code == 200


def test_upload_round_trip_leaks_nothing(server, corpus) -> None:
    c = server.client()
    src = corpus.files[0]
    r = c.post("/v1/deidentify", content=src.read_bytes(), headers={"X-Cloud-Trace-Context": f"{TRACE}/17;o=1",
                                                                     "Content-Type": "application/dicom"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/dicom" and r.headers["x-phiscrub-status"] == "done"
    out = pydicom.dcmread(__import__("io").BytesIO(r.content))
    assert str(out.PatientName).startswith("PS^") and out.SOPInstanceUID.startswith("2.25.")
    # every byte of the response, body and headers, scanned for every planted value and the file's name
    head = "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode()
    assert _scan_bytes(r.content + b"\n" + head, _needles(corpus)) == []
    # deterministic: the same file and key give the same bytes
    again = c.post("/v1/deidentify", content=src.read_bytes())
    assert again.status_code == 200 and again.content == r.content
    assert r.headers["x-phiscrub-item"] == again.headers["x-phiscrub-item"]
    # the policy by name; an unknown or malformed name is refused before the body is read
    assert c.get("/v1/policies").json() == {"policies": ["default", "research", "strict"]}  # the shipped ones too
    assert c.post("/v1/deidentify?policy=default", content=src.read_bytes()).content == r.content
    for bad in ("nope", "../default", "default/..", ".hidden"):
        assert c.post("/v1/deidentify", params={"policy": bad}, content=b"x").status_code == 404
    # the upload went through the audit log like a CLI item; the spool is empty again
    recs = [json.loads(x) for x in (server.state / "audit.jsonl").read_text().splitlines()]
    items = [x for x in recs if x["event"] == "item" and x["channel"] == "upload" and x["status"] == "done"]
    assert len(items) >= 3 and items[-1]["item"] == r.headers["x-phiscrub-item"] and items[-1]["verification"] == "passed"
    time.sleep(0.2)  # the response's background task removes the output folder after sending
    assert not any(p.is_file() for p in (server.state / "spool").rglob("*"))


def _raw(server, request: bytes) -> tuple[int, bytes]:
    host, port = server.url.rsplit(":", 1)
    with socket.create_connection(("127.0.0.1", int(port)), timeout=30) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.settimeout(2)
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return int(data.split(b" ", 2)[1]), data


def test_bad_input_gets_a_clear_4xx_never_a_500(server, corpus) -> None:
    c = server.client()
    good = corpus.files[1].read_bytes()
    cases = {
        "garbage": (c.post("/v1/deidentify", content=b"\x00garbage\xff" * 500), 415),
        "text": (c.post("/v1/deidentify", content=b"Patient: Quorvath, Annelise\n" * 3), 415),
        "empty": (c.post("/v1/deidentify", content=b""), 400),
        "a form": (c.post("/v1/deidentify", files={"file": ("Quorvath.dcm", good)}), 415),
        "truncated": (c.post("/v1/deidentify", content=good[: len(good) // 3]), 422),
        "preamble only": (c.post("/v1/deidentify", content=good[:132]), 422),
        "broken TIFF": (c.post("/v1/deidentify", content=b"II*\x00" + b"\xff" * 300), 415),
        "over the limit, streamed": (c.post("/v1/deidentify", content=iter([b"\0" * 65536] * (MAX // 65536 + 2))), 413),
        "job: not JSON": (c.post("/v1/jobs", content=b"{nope"), 400),
        "job: a list": (c.post("/v1/jobs", json=[1, 2]), 400),
        "job: outside the roots": (c.post("/v1/jobs", json={"src": "/etc", "dst": "/tmp/x"}), 403),
        "job: unknown": (c.get("/v1/jobs/" + "f" * 32), 404),
        "job: bad id": (c.get("/v1/jobs/../../etc"), 404),
        "eventarc: no ce headers": (c.post("/", json={"bucket": "b", "name": "n"}), 400),
        "eventarc: bad generation": (c.post("/", content=b'{"bucket":"in-bucket","name":"a","generation":"12x"}',
                                            headers={"ce-specversion": "1.0", "ce-type": "google.cloud.storage.object.v1.finalized",
                                                     "ce-id": "1", "ce-source": "x"}), 400),
        "pubsub: bad base64": (c.post("/v1/pubsub", json={"message": {"data": "@@@", "attributes": {"eventType": "OBJECT_FINALIZE"}}}),
                               400),
        "pubsub: no message": (c.post("/v1/pubsub", json={"subscription": "s"}), 400),
        "pubsub: huge": (c.post("/v1/pubsub", content=b"{" + b" " * (2 << 20)), 413),
        "review: unknown": (c.post("/v1/review/0123abcd/release"), 404),
    }
    for what, (r, code) in cases.items():
        assert r.status_code == code, (what, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json"), what
        msg = r.json().get("error") or r.json().get("reason")
        assert msg and "Traceback" not in r.text, what
        assert _scan_bytes(r.content, _needles(corpus)) == [], what
    # a declared Content-Length far over the limit is refused before any byte of the body
    code, raw = _raw(server, b"POST /v1/deidentify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                     + b"\r\nContent-Length: 99999999999\r\n\r\n")
    assert code == 413 and b"over the limit" in raw
    code, _ = _raw(server, b"POST /v1/deidentify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                   + b"\r\nContent-Length: 12abc\r\n\r\n")
    assert code == 400
    # events: no destination configured for this server: a 503 the platform retries, not a 500
    ev = c.post("/", json={"bucket": "in-bucket", "name": "a.dcm", "generation": 1, "size": 3},
                headers={"ce-specversion": "1.0", "ce-type": "google.cloud.storage.object.v1.finalized", "ce-id": "1",
                         "ce-source": "//storage.googleapis.com/projects/_/buckets/in-bucket"})
    assert ev.status_code == 503 and "PHISCRUB_SERVE_EVENT_DST" in ev.json()["error"]
    assert not any(json.loads(x)["httpRequest"]["status"] == 500 for x in server.log_lines()
                   if x.startswith("{") and "httpRequest" in x)


def test_metrics_are_exposed(server, corpus) -> None:
    c = server.client()
    assert c.post("/v1/deidentify", content=corpus.files[2].read_bytes()).status_code == 200
    text = c.get("/metrics").text
    assert 'phiscrub_items_total{channel="upload",kind="dicom",status="done"}' in text
    assert 'phiscrub_item_seconds_bucket{kind="dicom",le="0.5"}' in text
    assert 'phiscrub_bytes_processed_total{kind="dicom"}' in text
    assert 'phiscrub_phi_found_total{category="person-name"}' in text
    assert 'phiscrub_http_requests_total{code="401",route=' in text
    assert _scan_bytes(text.encode(), _needles(corpus)) == []


def test_log_lines_are_cloud_logging_json_without_phi(server, corpus) -> None:
    c = server.client()
    c.post("/v1/deidentify", content=corpus.files[3].read_bytes(), headers={"X-Cloud-Trace-Context": f"{TRACE}/5;o=1"},
           params={"note": "Quorvath50000"})
    c.post("/v1/deidentify", content=b"junk", headers={"X-Cloud-Trace-Context": "Quorvath50000/1"})  # malformed: ignored
    time.sleep(0.3)
    lines = [x for x in server.log_lines() if x.strip()]
    entries = [json.loads(x) for x in lines if x.startswith("{")]
    assert len(entries) >= 10 and all("severity" in e and "message" in e for e in entries)
    assert {e["severity"] for e in entries} <= {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    traced = [e for e in entries if e.get("logging.googleapis.com/trace") == f"projects/-/traces/{TRACE}"]
    # the access line and the item line of that request both carry the trace
    assert {e["message"] for e in traced} >= {"POST /v1/deidentify 200", "item done"}
    assert format(5, "016x") in {e["logging.googleapis.com/spanId"] for e in traced if "POST" in e["message"]}
    assert all(e["logging.googleapis.com/trace_sampled"] is True for e in traced)
    access = [e for e in entries if "httpRequest" in e]
    assert access and all(e["httpRequest"]["requestUrl"] in ("/", "/healthz", "/readyz", "/metrics", "/v1/deidentify", "/v1/jobs",
                                                              "/v1/jobs/{job_id}", "/v1/pubsub", "/v1/review", "/v1/policies",
                                                              "/v1/review/{item_id}/release", "-") for e in access)
    blob = server.log.read_bytes()
    assert _scan_bytes(blob, _needles(corpus)) == [] and b"Traceback" not in blob
    assert scan_tree(server.state, _needles(corpus)) == {}


def test_async_job_counters_and_review_reject(server, corpus) -> None:
    c = server.client()
    src, dst = server.state.parent / "jobs" / "Quorvath_in", server.state.parent / "jobs" / "out"
    job_corpus = make_corpus(src, 5, per_study=5, seed=6)
    (src / "Quorvath60000_notes.dcm").write_bytes(b"DICM" * 50)  # not DICOM: quarantined
    r = c.post("/v1/jobs", json={"src": str(src), "dst": str(dst)})
    assert r.status_code == 202, r.text
    name = r.json()["name"]
    assert r.headers["location"] == "/v1/" + name
    end = time.monotonic() + 60
    while not (op := c.get("/v1/" + name).json())["done"]:
        assert time.monotonic() < end
        time.sleep(0.2)
    assert op["metadata"]["counter"] == {"success": "5", "failure": "1", "pending": "0"}, op
    assert op["response"] == {"success": "5", "failure": "1"}
    assert len([p for p in dst.rglob("*.dcm")]) == 5
    assert scan_tree(dst, job_corpus.planted + ["Quorvath_in", "notes"]) == {}
    # the junk file waits in the review queue under its keyed hash, with its reason
    queue = c.get("/v1/review").json()["items"]
    # (it carries the DICM marker at byte 128, so it is a damaged DICOM file, not a foreign one)
    assert len(queue) == 1 and queue[0]["channel"] == "job" and queue[0]["category"] == "corrupt"
    rid = queue[0]["id"]
    assert "Quorvath" not in json.dumps(queue) and "notes" not in json.dumps(queue)
    # release re-runs it: still not DICOM, so it is refused and stays queued
    rel = c.post(f"/v1/review/{rid}/release")
    assert rel.status_code == 409 and "release refused" in rel.json()["error"]
    assert c.get("/v1/review").json()["items"][0]["status"] == "pending"
    assert c.post(f"/v1/review/{rid}/reject").json() == {"status": "rejected", "item": rid}
    assert c.post(f"/v1/review/{rid}/reject").status_code == 409
    assert c.get("/v1/review").json()["items"] == []
    assert not (server.state / "quarantine" / f"{rid}.bin").exists()
    # a second submission resumes: what was done is skipped and counted done
    op2 = c.post("/v1/jobs", json={"src": str(src), "dst": str(dst)}).json()
    while not (op2 := c.get("/v1/" + op2["name"]).json())["done"]:
        time.sleep(0.2)
    assert op2["metadata"]["counter"] == {"success": "5", "failure": "1", "pending": "0"}
    recs = [json.loads(x) for x in (server.state / "audit.jsonl").read_text().splitlines()]
    events = [x["event"] for x in recs]
    assert events.count("job-start") == 2 and events.count("job-end") == 2
    rej = [x for x in recs if x["event"] == "review-reject"]
    assert len(rej) == 1 and rej[0]["item"] == rid and rej[0]["reviewer"].startswith("token-")
    refused = [x for x in recs if x["event"] == "review-release"]
    assert len(refused) == 1 and refused[0]["outcome"] == "refused"
    assert scan_tree(server.state, job_corpus.planted + ["Quorvath_in", "Quorvath60000_notes"]) == {}
    from phiscrub.keys import KeyRing
    from phiscrub.pipeline.audit import check_log
    from tests.conftest import KEY

    assert check_log(server.state / "audit.jsonl", KeyRing(KEY.encode())).ok


def test_slide_upload_round_trip(server, tmp_path) -> None:
    import openslide

    from tests.wsi.slide_factory import make_aperio

    planted = make_aperio(tmp_path / "Quorvath_biopsy.svs")
    r = server.client().post("/v1/deidentify", content=(tmp_path / "Quorvath_biopsy.svs").read_bytes())
    assert r.status_code == 200 and r.headers["x-phiscrub-kind"] == "slide" and r.headers["content-type"] == "image/tiff"
    head = "\n".join(f"{k}: {v}" for k, v in r.headers.items()).encode()
    assert _scan_bytes(r.content + head, planted.values + ["Quorvath_biopsy"]) == []
    (tmp_path / "out.svs").write_bytes(r.content)
    assert openslide.OpenSlide(str(tmp_path / "out.svs")).properties["openslide.vendor"] == "aperio"

"""Bucket events on a real server, reading from gcp-storage-emulator and writing to another
bucket: an Eventarc CloudEvent and a Pub/Sub push each produce exactly one output even when
delivered twice (or four times at once); a quarantined item waits for review, a release
under the unchanged policy is refused, and after the policy is fixed it is published."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest

from phiscrub.pipeline.objectstore import filesystem
from tests.conftest import scan_tree
from tests.pipeline.corpus import make_corpus
from tests.pipeline.servers import gcs_emulator  # noqa: F401 - fixture
from tests.service.serve import serve

pytestmark = pytest.mark.slow
OUT = "out-bucket/deid"
KEEP_DESCRIPTION = "tags:\n  - {select: StudyDescription, action: keep}\n"  # lets a name through: verification catches it


@pytest.fixture(scope="module")
def env(gcs_emulator, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    work = tmp_path_factory.mktemp("svc-events")
    (work / "policies").mkdir()
    (work / "policies" / "events.yaml").write_text(KEEP_DESCRIPTION)
    mp = pytest.MonkeyPatch()
    mp.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    gcs = filesystem("gs")
    gcs.mkdir("in-bucket")
    gcs.mkdir("out-bucket")
    corpus = make_corpus(work / "Quorvath_src", 6, per_study=3, seed=7)
    with serve(work, {"STORAGE_EMULATOR_HOST": gcs_emulator, "PHISCRUB_SERVE_EVENT_DST": f"gs://{OUT}",
                      "PHISCRUB_SERVE_POLICIES": str(work / "policies"), "PHISCRUB_SERVE_EVENT_POLICY": "events"}) as s:
        yield s, gcs, corpus, work
    mp.undo()


def _put(gcs, name: str, data: bytes) -> dict:
    gcs.pipe_file(f"in-bucket/{name}", data)
    return gcs.info(f"in-bucket/{name}")


def _outputs(gcs) -> list[str]:
    try:
        return sorted(gcs.find(OUT))
    except FileNotFoundError:
        return []


def _eventarc(client, name: str, info: dict, generation_as=int):
    return client.post("/", content=json.dumps({
        "kind": "storage#object", "bucket": "in-bucket", "name": name, "generation": generation_as(info["generation"]),
        "size": str(info["size"]), "contentType": "application/dicom"}).encode(), headers={
        "ce-specversion": "1.0", "ce-type": "google.cloud.storage.object.v1.finalized", "ce-id": "evt-1",
        "ce-source": "//storage.googleapis.com/projects/_/buckets/in-bucket", "ce-subject": f"objects/{name}",
        "ce-time": "2024-01-01T00:00:00Z", "Content-Type": "application/json"})


def _pubsub(client, name: str, info: dict, event: str = "OBJECT_FINALIZE"):
    payload = {"kind": "storage#object", "bucket": "in-bucket", "name": name, "generation": str(info["generation"]),
               "size": str(info["size"])}
    return client.post("/v1/pubsub", json={"subscription": "projects/p/subscriptions/s", "message": {
        "data": base64.b64encode(json.dumps(payload).encode()).decode(), "messageId": "123", "publishTime": "2024-01-01T00:00:00Z",
        "attributes": {"eventType": event, "bucketId": "in-bucket", "objectId": name, "objectGeneration": str(info["generation"]),
                       "payloadFormat": "JSON_API_V1", "notificationConfig": "projects/_/buckets/in-bucket/notificationConfigs/1"}}})


def _upload(gcs, path):
    """Puts a source file in the input bucket: (object name, its info, the outputs before)."""
    name = "Quorvath_src/" + path.name
    info = _put(gcs, name, path.read_bytes())
    return name, info, _outputs(gcs)


def test_eventarc_event_delivered_twice_gives_one_output(env) -> None:
    server, gcs, corpus, _ = env
    c = server.client()
    name, info, before = _upload(gcs, corpus.files[0])
    first = _eventarc(c, name, info)  # generation as a JSON number, size as a string
    assert first.status_code == 200 and first.json()["status"] == "done", first.text
    second = _eventarc(c, name, info, generation_as=str)  # the redelivery: generation as a string
    assert second.status_code == 200 and second.json()["status"] == "duplicate" and second.json()["previous"] == "done"
    new = sorted(set(_outputs(gcs)) - set(before))
    assert len(new) == 1 and new[0] == f"{OUT}/{first.json()['output']}"
    assert pydicom.dcmread(gcs.open(new[0], "rb")).PatientName != "Quorvath70000^Annelise70000"


def test_pubsub_push_delivered_twice_gives_one_output(env) -> None:
    server, gcs, corpus, _ = env
    c = server.client()
    name, info, before = _upload(gcs, corpus.files[1])
    first, second = _pubsub(c, name, info), _pubsub(c, name, info)
    assert first.status_code == 200 and first.json()["status"] == "done", first.text
    assert second.status_code == 200 and second.json()["status"] == "duplicate"
    assert len(set(_outputs(gcs)) - set(before)) == 1
    # the same object generation announced on the other channel is the same item
    assert _eventarc(c, name, info).json()["status"] == "duplicate"
    # not a finalize, or the service's own output: acknowledged, nothing done
    assert _pubsub(c, name, info, event="OBJECT_DELETE").json()["status"] == "ignored"
    out_name = _outputs(gcs)[0][len("out-bucket/"):]
    ev = c.post("/v1/pubsub", json={"message": {"attributes": {"eventType": "OBJECT_FINALIZE", "bucketId": "out-bucket",
                                                               "objectId": out_name, "objectGeneration": "1",
                                                               "payloadFormat": "NONE"}}})
    assert ev.json() == {"status": "ignored", "reason": "an output of this service"}
    assert len(set(_outputs(gcs)) - set(before)) == 1
    # a new generation of the object is a new item; with the same dataset it is an identical
    # copy of the released instance, and nothing is written again
    info2 = _put(gcs, name, corpus.files[1].read_bytes())
    assert info2["generation"] != info["generation"]
    assert _pubsub(c, name, info2).json()["status"] == "duplicate"


def test_simultaneous_deliveries_do_the_work_once(env) -> None:
    server, gcs, corpus, _ = env
    name, info, before = _upload(gcs, corpus.files[2])
    clients = [server.client() for _ in range(4)]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: (_eventarc if i % 2 else _pubsub)(clients[i], name, info), range(4)))
    statuses = sorted(r.json().get("status", r.json().get("error", "")[:20]) for r in got)
    assert statuses.count("done") == 1, statuses
    assert all(r.status_code in (200, 409) for r in got)
    assert len(set(_outputs(gcs)) - set(before)) == 1
    recs = [json.loads(x) for x in (server.state / "audit.jsonl").read_text().splitlines()]
    item_id = got[0].json().get("item") or next(r.json()["item"] for r in got if "item" in r.json())
    assert len([x for x in recs if x["event"] == "item" and x["item"] == item_id and x["channel"] != "review"]) == 1


def test_quarantined_event_is_reviewed_and_released_after_the_policy_is_fixed(env) -> None:
    server, gcs, corpus, work = env
    c = server.client()
    ds = pydicom.dcmread(corpus.files[3])
    ds.StudyDescription = f"follow-up for {ds.PatientName}"
    path = work / "Quorvath_followup.dcm"
    ds.save_as(path)
    name = "Quorvath_src/Quorvath_followup.dcm"
    info = _put(gcs, name, path.read_bytes())
    before = _outputs(gcs)
    r = _eventarc(c, name, info)
    assert r.status_code == 200 and r.json()["status"] == "quarantined" and r.json()["category"] == "verification"
    assert _outputs(gcs) == before  # nothing published
    queue = c.get("/v1/review").json()["items"]
    assert [q["id"] for q in queue] == [r.json()["item"]] and "still present" in queue[0]["reason"]
    rid = queue[0]["id"]
    refused = c.post(f"/v1/review/{rid}/release")
    assert refused.status_code == 409 and _outputs(gcs) == before
    (work / "policies" / "events.yaml").write_text("profile: basic\n")  # the operator fixes the policy
    released = c.post(f"/v1/review/{rid}/release")
    assert released.status_code == 200, released.text
    new = sorted(set(_outputs(gcs)) - set(before))
    assert new == [f"{OUT}/{released.json()['output']}"]
    assert c.get("/v1/review").json()["items"] == []
    # the event redelivered now: the item is done, nothing more is written
    assert _eventarc(c, name, info).json()["status"] == "duplicate" and len(_outputs(gcs)) == len(before) + 1
    recs = [json.loads(x) for x in (server.state / "audit.jsonl").read_text().splitlines()]
    rel = [x for x in recs if x["event"] == "review-release"]
    assert [x["outcome"] for x in rel] == ["refused", "released"] and rel[1]["verification"] == "passed"
    (work / "policies" / "events.yaml").write_text(KEEP_DESCRIPTION)


def test_no_planted_value_in_outputs_state_or_logs(env, tmp_path: Path) -> None:
    server, gcs, corpus, _ = env
    got = tmp_path / "got"
    for k in _outputs(gcs):
        p = got / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gcs.cat_file(k))
    assert len(list(got.rglob("*.dcm"))) == 4  # a new generation of an object rewrote its output
    needles = corpus.planted + [p.stem for p in corpus.files] + ["Quorvath_src", "Quorvath_followup", "in-bucket/Quorvath"]
    assert scan_tree(got, needles) == {}
    assert scan_tree(server.state, needles) == {}
    log = server.log.read_text()
    assert all(n not in log for n in needles) and "Traceback" not in log

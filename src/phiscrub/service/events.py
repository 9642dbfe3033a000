"""Bucket events: Eventarc CloudEvents (google.cloud.storage.object.v1.finalized, binary
mode: ce-* headers and the object's JSON as the body) at POST /, and Pub/Sub push
deliveries of GCS notifications (OBJECT_FINALIZE; base64 message data plus attributes)
at POST /v1/pubsub.

Each event is one item keyed by bucket, object and generation, its key claimed in the
pipeline's JobState (SQLite) before any work: a redelivered event finds the item finished
and does nothing; one delivered twice at once finds it claimed and is told to come back (409: Pub/Sub and Eventarc retry a
non-2xx, and the retry then finds it finished). Transient storage trouble answers 503 so
the platform redelivers; anything else is acknowledged (a quarantined item waits in the
review queue; redelivering it would not change the verdict).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from phiscrub.pipeline.storage import Item
from phiscrub.service.core import Origin, Service
from phiscrub.service.uploads import job_for

FINALIZED = "google.cloud.storage.object.v1.finalized"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    name: str
    generation: str
    size: int | None
    finalized: bool
    event_id: str = ""


def _integer(value: object, what: str, required: bool = True) -> int | None:
    """generation and size arrive as strings (JSON API int64) or as numbers."""
    if value is None or value == "":
        if required:
            raise HTTPException(400, f"event has no {what}")
        return None
    if isinstance(value, bool):
        raise HTTPException(400, f"event {what} is not an integer")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    else:
        raise HTTPException(400, f"event {what} is not an integer")
    if n < 0:
        raise HTTPException(400, f"event {what} is negative")
    return n


def _object(bucket: object, name: object, generation: object, size: object, finalized: bool, event_id: str) -> ObjectEvent:
    if not isinstance(bucket, str) or not _BUCKET_RE.match(bucket):
        raise HTTPException(400, "event has no valid bucket name")
    if not isinstance(name, str) or not name or len(name.encode()) > 1024:
        raise HTTPException(400, "event has no valid object name")
    gen = _integer(generation, "generation")
    return ObjectEvent(bucket, name, str(gen), _integer(size, "size", required=False), finalized, event_id[:128])


def _json(body: bytes, what: str) -> dict:
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(400, f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HTTPException(400, f"{what} must be a JSON object")
    return doc


def parse_eventarc(headers, body: bytes) -> ObjectEvent:
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/cloudevents+json":  # structured mode: attributes in the body
        doc = _json(body, "CloudEvent")
        attrs = {k: str(v) for k, v in doc.items() if k != "data" and isinstance(v, str | int)}
        data = doc.get("data")
        if not isinstance(data, dict):
            raise HTTPException(400, "CloudEvent has no object data")
    else:
        attrs = {k[3:]: v for k, v in headers.items() if k.lower().startswith("ce-")}
        if not attrs.get("type") or not attrs.get("specversion"):
            raise HTTPException(400, "not a CloudEvent: binary mode needs ce-specversion and ce-type headers")
        data = _json(body, "CloudEvent data")
    if attrs.get("specversion") != "1.0":
        raise HTTPException(400, "unsupported CloudEvents specversion (1.0 expected)")
    etype = attrs.get("type", "")
    bucket = data.get("bucket")
    if bucket is None:  # //storage.googleapis.com/projects/_/buckets/BUCKET
        bucket = attrs.get("source", "").rpartition("/buckets/")[2] or None
    name = data.get("name")
    if name is None and attrs.get("subject", "").startswith("objects/"):
        name = attrs["subject"][len("objects/"):]
    if etype != FINALIZED:
        return ObjectEvent(str(bucket or ""), "", "0", None, False, attrs.get("id", ""))
    return _object(bucket, name, data.get("generation"), data.get("size"), True, attrs.get("id", ""))


def parse_pubsub(body: bytes) -> ObjectEvent:
    doc = _json(body, "Pub/Sub push body")
    msg = doc.get("message")
    if not isinstance(msg, dict):
        raise HTTPException(400, "Pub/Sub push body has no message")
    attrs = msg.get("attributes") or {}
    if not isinstance(attrs, dict):
        raise HTTPException(400, "Pub/Sub message attributes must be an object")
    data: dict = {}
    raw = msg.get("data")
    if raw:
        if not isinstance(raw, str):
            raise HTTPException(400, "Pub/Sub message data must be base64 text")
        try:
            decoded = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HTTPException(400, "Pub/Sub message data is not valid base64") from None
        if attrs.get("payloadFormat", "JSON_API_V1") == "JSON_API_V1":
            data = _json(decoded, "notification payload")
    event_id = str(msg.get("messageId") or msg.get("message_id") or "")
    if attrs.get("eventType") != "OBJECT_FINALIZE":
        return ObjectEvent("", "", "0", None, False, event_id)
    return _object(attrs.get("bucketId", data.get("bucket")), attrs.get("objectId", data.get("name")),
                   attrs.get("objectGeneration", data.get("generation")), data.get("size"), True, event_id)


def _skipped(svc: Service, ev: ObjectEvent) -> str:
    """Why an event is acknowledged without work ('' : it is an item)."""
    base = ev.name.rsplit("/", 1)[-1]
    if any(p.startswith(".phiscrub") for p in ev.name.split("/")) or base.startswith(".partial-"):
        return "a state or temporary object"
    dst = svc.settings.event_dst
    if dst.startswith(("gs://", "gcs://")):
        root = dst.partition("://")[2].strip("/")
        if f"{ev.bucket}/{ev.name}".startswith(root + "/"):
            return "an output of this service"  # writing there must not trigger more work
    return ""


async def handle(svc: Service, ev: ObjectEvent, channel: str) -> tuple[int, dict]:
    if not ev.finalized:
        return 200, {"status": "ignored", "reason": "not an object-finalized event"}
    if svc.settings.buckets and ev.bucket not in svc.settings.buckets:
        raise HTTPException(403, "events from this bucket are not accepted (PHISCRUB_SERVE_BUCKETS)")
    if not svc.settings.event_dst:
        raise HTTPException(503, "no destination for bucket events is configured (PHISCRUB_SERVE_EVENT_DST)")
    why = _skipped(svc, ev)
    if why:
        return 200, {"status": "ignored", "reason": why}
    policy = svc.settings.event_policy
    job = job_for(svc, policy, svc.settings.event_dst, src=f"gs://{ev.bucket}")
    uri = f"gs://{ev.bucket}/{ev.name}"
    item = Item(uri, ev.size or 0, ev.generation)  # a notification without payload has no size: the read tells
    # keyed by bucket, object and generation only: a redelivery after a policy change is
    # still the same event (a job over the bucket, like the CLI, keys by policy as well)
    key = svc.keys.hash_hex(f"event:{uri}#{ev.generation}", 32)
    item_id = svc.keys.hash_hex("path:" + uri)
    state, previous = svc.store.claim(key, svc.settings.lease_s)
    if state == "busy":
        raise HTTPException(409, "this object generation is being processed by another delivery; retry later")
    if state == "finished":
        svc.metrics.duplicates.labels(channel).inc()
        svc.audit("event-duplicate", channel=channel, item=item_id, status=previous)
        return 200, {"status": "duplicate", "previous": previous, "item": item_id}
    try:
        res = await run_in_threadpool(svc.run_released, item, job, key)
    except BaseException:
        svc.store.record(key, "failed", "", "internal")  # release the claim
        raise
    svc.record(res, job, Origin(channel, policy, dst=str(job.dst), key=key))
    body = {"status": res.status, "category": res.category, "item": res.source_hash}
    if res.status == "done":
        body["output"] = res.relpath
    elif res.reason:
        body["reason"] = res.reason
    return (503 if res.status == "failed" and res.category == "transient" else 200), body


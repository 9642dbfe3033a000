"""The review queue: quarantined (or failed) items of events and jobs, with their reasons,
waiting for a reviewer to release or reject each.

Release never publishes on a reviewer's word alone: the original is run through the
runner again, under the policy as it is now (an operator may have fixed it), and only an
output that passes the runner's verification is published to the item's destination. If
it fails again, the item stays in the queue with the new reason. Reject keeps the item
out for good and deletes the quarantined original (PHI that is no longer needed). Every
decision is an audit record: who (a hash of the token), which item (a keyed hash), what.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.concurrency import run_in_threadpool

from phiscrub.pipeline.storage import Item
from phiscrub.service.core import Origin, Service
from phiscrub.service.uploads import job_for


def _pending(svc: Service, rid: str) -> dict:
    row = svc.store.review_item(rid) if rid.isalnum() and len(rid) <= 64 else None
    if row is None:
        raise HTTPException(404, "no such item in the review queue")
    if row["status"] != "pending":
        raise HTTPException(409, f"this item was already decided ({row['status']})")
    return row


async def release(svc: Service, rid: str, reviewer: str) -> dict:
    row = _pending(svc, rid)
    original = svc.quarantine_dir / f"{rid}.bin"
    if not original.is_file():
        raise HTTPException(409, "the quarantined original is no longer held; it cannot be released")
    job = job_for(svc, row["policy"], row["dst"], quarantine=False)
    if not svc.store.decide(rid, "releasing", reviewer):
        raise HTTPException(409, "another reviewer is deciding this item")
    try:
        res = await run_in_threadpool(svc.run_item, Item(str(original), original.stat().st_size, "review"), job)
    except BaseException:
        svc.store.decide(rid, "pending", "", expect="releasing")
        raise
    res.source_hash = rid
    svc.record(res, job, Origin("review", row["policy"], key=row["item_key"]))
    if res.status != "done":
        svc.store.decide(rid, "pending", "", expect="releasing")
        svc.audit("review-release", item=rid, reviewer=reviewer, outcome="refused", policy=job.policy_hash,
                  category=res.category, reason=res.reason, verification="failed" if res.status == "quarantined" else "not-run")
        raise HTTPException(409, f"release refused: the item still does not pass ({res.status}: {res.reason})")
    svc.store.decide(rid, "released", reviewer, res.relpath, expect="releasing")
    original.unlink(missing_ok=True)
    svc.audit("review-release", item=rid, reviewer=reviewer, outcome="released", policy=job.policy_hash,
              output=res.relpath, verification="passed")
    svc.metrics.review.set(svc.store.pending_reviews())
    return {"status": "released", "item": rid, "output": res.relpath}


def reject(svc: Service, rid: str, reviewer: str) -> dict:
    row = _pending(svc, rid)
    if not svc.store.decide(rid, "rejected", reviewer):
        raise HTTPException(409, "another reviewer is deciding this item")
    (svc.quarantine_dir / f"{rid}.bin").unlink(missing_ok=True)
    svc.audit("review-reject", item=rid, reviewer=reviewer, category=row["category"])
    svc.metrics.review.set(svc.store.pending_reviews())
    return {"status": "rejected", "item": rid}


def listing(svc: Service, status: str | None) -> list[dict]:
    keep = ("id", "channel", "policy", "kind", "size", "reason", "category", "status", "created", "decided", "reviewer", "output")
    return [{k: r[k] for k in keep} for r in svc.store.review_items(status)]

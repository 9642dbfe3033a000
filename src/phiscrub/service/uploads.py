"""POST /v1/deidentify: one file in, its de-identified file out.

The body is spooled to a private file and given to the runner as a local item whose
destination is a private folder of its own; the verified output is streamed back and
both folders are removed. The client keeps the original, so a quarantined upload is
answered (422, with the PHI-free reason) and not queued for review.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from phiscrub.errors import ConfigError
from phiscrub.pipeline import runner
from phiscrub.pipeline.storage import Item
from phiscrub.service.bodies import remove_tree, sniff, spool_upload
from phiscrub.service.core import Origin, Service
from phiscrub.service.policies import UnknownPolicy

MEDIA = {"dicom": "application/dicom", "slide": "image/tiff", "annotation": "application/octet-stream"}


def job_for(svc: Service, policy: str, dst: Path | str, src: str = "", quarantine: bool = True):
    try:
        return svc.job(policy, dst, src=src, quarantine=quarantine)
    except UnknownPolicy:
        raise HTTPException(404, "unknown policy name (GET /v1/policies lists them)") from None
    except ConfigError as e:
        raise HTTPException(503, f"the policy does not load: {e}") from None


async def deidentify_upload(svc: Service, request: Request, policy: str) -> object:
    job_for(svc, policy, svc.spool)  # an unknown policy is refused before the body is read
    if request.headers.get("content-type", "").lower().startswith("multipart/"):
        raise HTTPException(415, "send the file's bytes as the request body (curl --data-binary @FILE), not a form")
    path, size, digest = await spool_upload(request, svc.spool, svc.settings.max_upload_bytes)
    folder = path.parent
    try:
        kind = await run_in_threadpool(sniff, path)
        if kind is None:
            raise HTTPException(415, "not DICOM, a slide format or an annotation file that phiscrub knows")
        out = folder / "out"
        out.mkdir()
        job = job_for(svc, policy, out, quarantine=False)
        res = await run_in_threadpool(_run, svc, Item(str(path), size, digest), job)
    except BaseException:
        remove_tree(folder)
        raise
    path.unlink(missing_ok=True)  # the original (PHI) goes as soon as it was read
    res.source_hash = svc.keys.hash_hex("upload:" + digest)  # the same file, the same id
    svc.record(res, job, Origin("upload", policy, key=svc.keys.hash_hex(f"upload:{digest}:{job.policy_hash}", 32)))
    headers = {"X-Phiscrub-Item": res.source_hash, "X-Phiscrub-Status": res.status}
    if res.status != "done" or not res.relpath or not (out / res.relpath).is_file():
        remove_tree(folder)
        code = 503 if res.category == "transient" else 422
        body = {"status": res.status, "category": res.category, "reason": res.reason or "no output", "item": res.source_hash}
        return JSONResponse(body, status_code=code, headers=headers)
    headers["X-Phiscrub-Output"] = res.relpath
    headers["X-Phiscrub-Kind"] = kind
    return FileResponse(out / res.relpath, media_type=MEDIA.get(kind, "application/octet-stream"),
                        filename=os.path.basename(res.relpath), headers=headers,
                        background=BackgroundTask(remove_tree, folder))


def _run(svc: Service, item: Item, job):
    try:
        return svc.run_item(item, job)
    finally:
        # the runner keeps one sink per destination URI for the life of the process: this
        # one was a throwaway folder
        runner._OPEN.pop((os.getpid(), "dst", str(job.dst)), None)

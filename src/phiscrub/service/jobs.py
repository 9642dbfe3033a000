"""POST /v1/jobs and GET /v1/jobs/{id}: a SRC -> DST job in the background, reported like
the Cloud Healthcare API's long-running operation (metadata.counter: success, failure,
pending; done).

The job runs like `phiscrub deidentify`: the same planning (items done before with this
policy and key are skipped, and count as successes), the same runner, the same state and
audit. One worker runs items in a server thread under the service's concurrency limit;
more workers run the runner's local process pool. A server that stops marks its running
jobs 'interrupted'; submitting the job again resumes it.

SRC and DST must lie under a root the operator allowed (PHISCRUB_SERVE_JOB_ROOTS): an
API client must not make the service read or write wherever it likes.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from fastapi import HTTPException

from phiscrub.errors import PhiscrubError
from phiscrub.pipeline.planning import plan_job
from phiscrub.pipeline.storage import load_plugins, open_sink, open_source, scheme_of
from phiscrub.service.core import Origin, Service
from phiscrub.service.logs import log
from phiscrub.service.uploads import job_for

SUCCESS = ("done", "dropped", "duplicate")
FAILURE = ("failed", "quarantined")


def _norm(uri: str) -> str:
    if scheme_of(uri) == "file":
        return os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri).rstrip("/") + "/"
    return uri.rstrip("/") + "/"


def allowed(uri: str, roots: tuple[str, ...]) -> bool:
    """Under a root, on a path-component boundary (root /data does not allow /database)."""
    u = _norm(uri)
    return any(u.startswith(_norm(r)) for r in roots)


class JobManager:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self._threads: dict[str, threading.Thread] = {}
        self._stop = threading.Event()

    def start(self, src: str, dst: str, policy: str, workers: int, principal: str) -> str:
        roots = self.svc.settings.job_roots
        if not roots:
            raise HTTPException(403, "jobs are disabled: no storage roots are allowed (PHISCRUB_SERVE_JOB_ROOTS)")
        if not (isinstance(src, str) and isinstance(dst, str) and src and dst):
            raise HTTPException(400, "src and dst are required strings")
        if not allowed(src, roots) or not allowed(dst, roots):
            raise HTTPException(403, "src and dst must lie under an allowed root (PHISCRUB_SERVE_JOB_ROOTS)")
        ns, nd = _norm(src), _norm(dst)
        if nd.startswith(ns) or ns.startswith(nd):
            raise HTTPException(400, "dst must not be src, inside it, or above it")
        if not 1 <= workers <= 64:
            raise HTTPException(400, "workers must be between 1 and 64")
        local_dst = scheme_of(dst) == "file"
        if local_dst:
            dst = os.path.abspath(dst)
        job = job_for(self.svc, policy, dst, src=os.path.abspath(src) if scheme_of(src) == "file" else src)
        job_id = uuid.uuid4().hex
        src_hash = self.svc.keys.hash_hex("src:" + job.src)
        self.svc.store.create_job(job_id, policy, src_hash)
        self.svc.audit("job-start", job=job_id, policy=job.policy_hash, policy_name=policy, source=src_hash,
                       workers=workers, requested_by=principal)
        t = threading.Thread(target=self._run, args=(job_id, job, policy, workers, local_dst), daemon=True,
                             name=f"phiscrub-job-{job_id[:8]}")
        self._threads = {k: v for k, v in self._threads.items() if v.is_alive()}
        self._threads[job_id] = t
        self.svc.metrics.jobs.inc()
        t.start()
        return job_id

    def _run(self, job_id: str, job, policy: str, workers: int, local_dst: bool) -> None:
        svc, started = self.svc, time.perf_counter()
        counts = {"success": 0, "failure": 0}
        try:
            if local_dst:
                os.makedirs(job.dst, exist_ok=True)
            load_plugins(job.plugins)
            source = open_source(job.src)
            sink = open_sink(str(job.dst))
            found = list(source.items())

            def run_work(elements, work, on_crash, on_result) -> None:
                from phiscrub.pipeline.runner import run

                run(elements, job, workers, on_result, work=work, on_crash=on_crash)

            def done(k: str):  # the service store keeps no study digest: a done item stays done
                rel = svc.store.done_relpath(k)
                return None if rel is None else (rel, None)

            # the same pre-pass as the CLI: duplicates and study-wide terms decided before any item runs
            plan = plan_job(found, job, run_work, done, sink.exists)
            items, keys, skipped = plan.tasks, plan.item_keys, plan.skipped
            svc.store.update_job(job_id, total=len(found), success=skipped)
            svc.store.mark_pending(list(keys.values()))
            origin = Origin("job", policy, dst=str(job.dst), job_id=job_id)

            def on_result(r) -> None:
                svc.record(r, job, Origin(origin.channel, policy, origin.dst, keys.get(r.source, ""), job_id))
                ok = r.status in SUCCESS
                counts["success" if ok else "failure"] += 1
                svc.store.add_to_job(job_id, success=int(ok), failure=int(not ok))

            if workers <= 1:
                for it in items:
                    if self._stop.is_set():  # the server is stopping: the rest waits for a resubmission
                        raise _Stopped()
                    on_result(svc.run_item(it, job))
            else:
                from phiscrub.pipeline.runner import run

                run(items, job, workers, on_result)
            svc.store.update_job(job_id, status="done", ended=time.time())
            svc.audit("job-end", job=job_id, success=counts["success"] + skipped, failure=counts["failure"],
                      skipped=skipped, seconds=round(time.perf_counter() - started, 3))
        except _Stopped:
            svc.store.update_job(job_id, status="interrupted", ended=time.time(),
                                 error="the server stopped: submit the job again (finished items are skipped)")
            svc.audit("job-end", job=job_id, interrupted=True, success=counts["success"], failure=counts["failure"])
        except Exception as e:  # noqa: BLE001 - the job fails, the server goes on
            why = str(e) if isinstance(e, PhiscrubError) else f"{type(e).__name__}: {getattr(e, 'strerror', None) or 'see the server log'}"
            svc.store.update_job(job_id, status="failed", ended=time.time(), error=why[:300])
            svc.audit("job-end", job=job_id, error=why[:300], success=counts["success"], failure=counts["failure"])
            log(40, "job failed", phiscrub={"job": job_id, "error_type": type(e).__name__})
        finally:
            svc.metrics.jobs.dec()

    def operation(self, job_id: str) -> dict[str, Any]:
        row = self.svc.store.job(job_id) if _valid_id(job_id) else None
        if row is None:
            raise HTTPException(404, "no such job")
        return operation(row)

    def stop(self, timeout: float) -> None:
        """At shutdown: one-worker jobs stop after their current item; pool jobs are given
        ``timeout`` seconds to finish (then whatever is left is marked interrupted at the
        next start)."""
        self._stop.set()
        end = time.monotonic() + timeout
        for t in list(self._threads.values()):
            t.join(max(0.0, end - time.monotonic()))


class _Stopped(Exception):
    pass


def _valid_id(job_id: str) -> bool:
    return len(job_id) == 32 and all(c in "0123456789abcdef" for c in job_id)


def _rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def operation(row: dict) -> dict[str, Any]:
    """The Healthcare API's Operation shape: counters are int64, so JSON strings."""
    total, success, failure = row["total"], row["success"], row["failure"]
    finished = row["status"] != "running"
    pending = 0 if finished and row["status"] == "done" else max(0, total - success - failure)
    meta: dict[str, Any] = {
        "@type": "phiscrub.service.OperationMetadata",
        "apiMethodName": "phiscrub.deidentify",
        "createTime": _rfc3339(row["created"]),
        "counter": {"success": str(success), "failure": str(failure), "pending": str(pending)},
        "state": row["status"],
        "policy": row["policy"],
    }
    if row["ended"] is not None:
        meta["endTime"] = _rfc3339(row["ended"])
    op: dict[str, Any] = {"name": f"jobs/{row['id']}", "metadata": meta, "done": finished}
    if finished and row["status"] != "done":
        op["error"] = {"code": 13 if row["status"] == "failed" else 10, "message": row["error"]}
    elif finished:
        op["response"] = {"success": str(success), "failure": str(failure)}
    return op

"""The one object every endpoint shares: key, policies, state, audit, metrics, and the
function that runs an item through the pipeline's runner and records it everywhere the
command line does (job state, hash-chained audit) plus the service's own views (metrics,
dashboard activity, review queue).

Items run in the server's worker threads, at most ``concurrency`` at once (a semaphore):
de-identification is CPU-bound, and a burst of uploads must queue, not exhaust memory.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from phiscrub import __version__
from phiscrub.keys import KeyRing
from phiscrub.pipeline.audit import AuditLog, item_record
from phiscrub.pipeline.runner import ItemResult, Job, default_workers, process_item
from phiscrub.pipeline.storage import Item
from phiscrub.service.logs import log
from phiscrub.service.metrics import Metrics, item_kind
from phiscrub.service.policies import PolicyBook
from phiscrub.service.settings import Settings
from phiscrub.service.store import ServiceStore

REVIEWABLE = ("quarantined", "failed")


@dataclass(frozen=True)
class Origin:
    """Where an item came from and where it goes: enough to record it and, if it is
    quarantined, to release it later. No path or object name."""

    channel: str  # upload | eventarc | pubsub | job | review
    policy: str  # the policy's name
    dst: str = ""  # the destination a released item is published to ('' : none, an upload)
    key: str = ""  # the JobState key
    job_id: str = ""


class Service:
    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        self.settings = settings
        self.keys = keys
        self.state_dir = settings.state_dir.resolve()
        self.quarantine_dir = self.state_dir / "quarantine"
        self.spool = self.state_dir / "spool"
        if self.spool.exists():  # uploads a killed server left behind are PHI: never kept
            shutil.rmtree(self.spool, ignore_errors=True)
        self.spool.mkdir(parents=True, mode=0o700)
        self.store = ServiceStore(self.state_dir)
        self.policies = PolicyBook(settings.policies_dir)
        self.metrics = Metrics()
        self._audit = AuditLog(self.state_dir / "audit.jsonl", keys)
        self._audit_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(settings.concurrency or default_workers())
        self.metrics.review.set(self.store.pending_reviews())
        interrupted = self.store.interrupt_unfinished()
        self.audit("service-start", version=__version__, interrupted_jobs=interrupted, auth=settings.auth)

    def audit(self, event: str, **fields: object) -> dict:
        with self._audit_lock:
            return self._audit.append(event, **fields)

    def job(self, policy: str, dst: Path | str, src: str = "", quarantine: bool = True) -> Job:
        cfg = self.policies.get(policy)
        return Job(cfg, self.keys, cfg.policy.digest(), dst, self.quarantine_dir if quarantine else None, src=src)

    def run_item(self, item: Item, job: Job) -> ItemResult:
        with self.slots:
            return process_item(item, job)

    def run_released(self, item: Item, job: Job, key: str) -> ItemResult:
        """An instance written into a shared destination (bucket events): the first one
        released with a SOP Instance UID stays released (pipeline/released.py)."""
        from phiscrub.pipeline.released import process_single

        store = self.store

        def claim(sop: str, digest: str, who: str) -> str:
            with store.lock:
                return store.items.claim_sop(sop, digest, who)

        def unclaim(sop: str, who: str) -> None:
            with store.lock:
                store.items.unclaim_sop(sop, who)

        with self.slots:
            return process_single(item, job, key, claim, unclaim)

    def record(self, r: ItemResult, job: Job, origin: Origin) -> str:
        """Audit, state, metrics, dashboard, review queue; returns the item's kind."""
        kind = item_kind(r)
        self.audit("item", channel=origin.channel, job=origin.job_id,
                   **item_record(r, policy_hash=job.policy_hash, version=__version__))
        if origin.key:
            self.store.record(origin.key, r.status, r.relpath, r.category, r.attempts)
        self.metrics.item(r, kind, origin.channel)
        self.store.activity(origin.channel, kind, r.status, r.category, r.seconds, r.size)
        if r.status in REVIEWABLE and origin.dst and job.quarantine is not None \
                and (job.quarantine / f"{r.source_hash}.bin").is_file():
            self.store.enqueue(r.source_hash, item_key=origin.key, channel=origin.channel, policy=origin.policy,
                               dst=origin.dst, kind=kind, size=r.size, reason=r.reason, category=r.category)
            self.metrics.review.set(self.store.pending_reviews())
        level = logging.INFO if r.status in ("done", "dropped") else logging.WARNING
        log(level, f"item {r.status}", phiscrub={"channel": origin.channel, "item": r.source_hash, "kind": kind,
                                                  "status": r.status, "category": r.category, "seconds": r.seconds})
        return kind

    def close(self) -> None:
        self.audit("service-stop", version=__version__)
        with self._audit_lock:
            self._audit.close()
        self.store.close()

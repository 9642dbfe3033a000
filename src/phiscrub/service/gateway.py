"""A DICOM node that de-identifies what modalities send it and forwards the result, like
CTP's import and export pipeline: C-STORE in, the CLI's transform + verify, C-STORE or
STOW-RS out.

Receiving only spools: an association thread writes the instance durably to the spool and
its queue row (gateway_queue.py), then answers success. One pipeline thread does the rest,
so job state and audit have a single writer, as in the CLI: it runs each received original
through the runner's ``process_item`` into a local outbox (the same transform, the same
verification of the bytes as written, the same quarantine), deletes the original, and
forwards outbox files in batches. While the destination is down, forwarding pauses with
exponential backoff and full jitter and de-identification goes on; a restart finds the
queue where it was. Delivery is at least once: a kill between a peer's success and the
queue update resends an instance the peer already holds under the same UID (byte for
byte: outputs are deterministic), which C-STORE peers and STOW-RS stores keep once.

Logs name AE titles, counts and stages only, never a UID, a name or a path of an original;
pynetdicom's own logger is silenced because it prints UIDs.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from phiscrub import __version__
from phiscrub.errors import StorageError, TransientError
from phiscrub.keys import KeyRing
from phiscrub.pipeline.retry import RetryPolicy
from phiscrub.policy.config import Config
from phiscrub.service.gateway_dest import Destination, no_delay, open_destination
from phiscrub.service.gateway_queue import Row, SpoolQueue

log = logging.getLogger("phiscrub.gateway")

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass(frozen=True)
class GatewayOptions:
    forward: str  # dicom://AET@HOST:PORT or dicomweb+http(s)://...
    spool: Path
    ae_title: str = "PHISCRUB"
    host: str = "0.0.0.0"
    port: int = 11112
    allowed: tuple[str, ...] = ()  # calling AE titles; empty with allow_any False accepts none
    allow_any: bool = False
    max_associations: int = 10
    quarantine: Path | None = None
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    batch: int = 64
    timeout_s: float = 30.0


class Gateway:
    def __init__(self, opts: GatewayOptions, config: Config, keys: KeyRing) -> None:
        self.opts, self.config, self.keys = opts, config, keys
        self.policy_hash = config.policy.digest()
        self.dest: Destination = open_destination(opts.forward, opts.ae_title, opts.timeout_s)  # a bad URI: before any folder is made
        self.queue = SpoolQueue(opts.spool)
        self.state_dir = opts.spool / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.quarantine = opts.quarantine or opts.spool / "quarantine"
        self.backoff = RetryPolicy(attempts=1, base_s=opts.backoff_base_s, cap_s=opts.backoff_cap_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._events: collections.deque[tuple[str, dict]] = collections.deque()  # association events for the audit
        self._per_assoc: dict[int, int] = {}
        self._lock = threading.Lock()
        self._server = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self.port = opts.port

    # ---- receiving (association threads) ----

    def start(self) -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL + 1)  # its INFO/DEBUG lines carry UIDs
        logging.getLogger("pynetdicom").propagate = False
        ae = AE(ae_title=self.opts.ae_title)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, _transfer_syntaxes(ALL_TRANSFER_SYNTAXES))
        ae.add_supported_context(Verification)
        ae.maximum_associations = self.opts.max_associations
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.opts.timeout_s
        if not self.opts.allow_any:
            # pynetdicom rejects any other caller at association (rejected-permanent,
            # calling AE title not recognised); an empty list would accept everyone
            ae.require_calling_aet = list(self.opts.allowed) or ["\x00none"]
        handlers = [(evt.EVT_CONN_OPEN, no_delay), (evt.EVT_C_STORE, self._on_store), (evt.EVT_ACCEPTED, self._on_accepted),
                    (evt.EVT_REJECTED, self._on_rejected), (evt.EVT_RELEASED, self._on_closed),
                    (evt.EVT_ABORTED, self._on_closed)]
        self._thread = threading.Thread(target=self._pipeline, name="phiscrub-gateway-pipeline", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        self._server = ae.start_server((self.opts.host, self.opts.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]
        log.info("listening as %s on port %d; %s; forwarding by %s; queue %s", self.opts.ae_title, self.port,
                 "any calling AE accepted" if self.opts.allow_any else f"{len(self.opts.allowed)} calling AE title(s) allowed",
                 self.dest.describe(), _fmt_counts(self.queue.counts()))

    @staticmethod
    def _calling(event) -> str:
        aet = event.assoc.requestor.ae_title
        return (aet.decode("ascii", "replace") if isinstance(aet, bytes) else str(aet)).strip()

    def _on_accepted(self, event) -> None:
        with self._lock:
            self._per_assoc[id(event.assoc)] = 0

    def _on_rejected(self, event) -> None:
        aet = self._calling(event)
        log.warning("association from %s rejected", aet)
        self._events.append(("association-rejected", {"calling_aet": aet}))
        self._wake.set()

    def _on_closed(self, event) -> None:
        with self._lock:
            n = self._per_assoc.pop(id(event.assoc), None)
        if n is not None:
            log.info("association from %s closed: %d instance(s) received", self._calling(event), n)

    def _on_store(self, event) -> int:
        aet = self._calling(event)
        try:
            data = event.encoded_dataset(include_meta=True)
        except (AttributeError, ValueError, TypeError):
            return STATUS_CANNOT_UNDERSTAND
        key = self.keys.hash_hex("cstore:" + hashlib.sha256(data).hexdigest(), 32)
        try:
            self.queue.add(key, data, aet)
        except (OSError, sqlite3.Error) as e:  # the spool is full or gone: the sender keeps its copy and retries
            log.error("spool write failed (%s): answering out of resources", getattr(e, "strerror", None) or type(e).__name__)
            return STATUS_OUT_OF_RESOURCES
        with self._lock:
            if id(event.assoc) in self._per_assoc:
                self._per_assoc[id(event.assoc)] += 1
        self._wake.set()
        return STATUS_SUCCESS

    # ---- the pipeline thread: de-identify, forward ----

    def _pipeline(self) -> None:
        from phiscrub.pipeline.audit import AuditLog
        from phiscrub.pipeline.runner import Job
        from phiscrub.pipeline.state import JobState

        state = JobState(self.state_dir / "state.sqlite")  # a connection belongs to the thread that opened it
        audit = AuditLog(self.state_dir / "audit.jsonl", self.keys)
        job = Job(self.config, self.keys, self.policy_hash, self.queue.outbox, self.quarantine, durable=True)
        audit.append("gateway-start", version=__version__, policy=self.policy_hash, profile=self.config.policy.profile,
                     ae_title=self.opts.ae_title, allowed=sorted(self.opts.allowed), allow_any=self.opts.allow_any,
                     destination=self.keys.hash_hex("dst:" + self.opts.forward), queue=self.queue.counts())
        self._ready.set()
        failures, forward_after, deid_after = 0, 0.0, 0.0
        try:
            while True:
                self._drain_events(audit)
                now = time.monotonic()
                worked = False
                try:
                    if now >= deid_after:
                        for row in self.queue.rows("received", 8):
                            if not self._deidentify(row, job, state, audit):
                                deid_after = time.monotonic() + self.backoff.delay(1)
                                break
                            worked = True
                    if now >= forward_after and self.queue.rows("outbox", 1):
                        ok = self._forward(state, audit, failures)
                        failures = 0 if ok else failures + 1
                        if not ok:
                            forward_after = time.monotonic() + self.backoff.delay(failures)
                        worked = True
                except Exception as e:  # noqa: BLE001 - the thread must outlive a bad moment (disk, database)
                    log.error("pipeline error (%s): pausing before the next try", type(e).__name__)
                    deid_after = forward_after = time.monotonic() + self.backoff.delay(2)
                if self._stop.is_set():
                    break
                if not worked:
                    self.dest.idle()
                    due = [t - time.monotonic() for t in (forward_after, deid_after) if t > time.monotonic()]
                    self._wake.wait(min([1.0, *due]))
                    self._wake.clear()
        finally:
            self.dest.idle()
            self._drain_events(audit)
            audit.append("gateway-stop", queue=self.queue.counts())
            state.close()
            audit.close()

    def _drain_events(self, audit) -> None:
        while self._events:
            event, fields = self._events.popleft()
            audit.append(event, **fields)

    def _deidentify(self, row: Row, job, state, audit) -> bool:
        """False when it should be tried again later (the outbox's disk in trouble)."""
        from phiscrub.pipeline.audit import item_record
        from phiscrub.pipeline.released import process_single
        from phiscrub.pipeline.storage import Item

        path = self.queue.inbox_path(row.key)
        state.mark_pending([row.key])
        # what was sent stays sent: a later copy of a released SOP Instance UID is a duplicate
        # (same dataset) or quarantined (other content)
        res = process_single(Item(str(path), row.size, row.key), job, row.key, state.claim_sop, state.unclaim_sop)
        if res.status == "failed" and res.category in ("transient", "io"):
            log.warning("de-identification deferred: cannot write the outbox (%s)", res.category)
            self.queue.move(row, "received", attempts=1)
            return False
        audit.append("item", **item_record(res, policy_hash=self.policy_hash, version=__version__),
                     calling_aet=row.calling_aet)
        if res.status == "done":
            self.queue.move(row, "outbox", relpath=res.relpath)
        else:  # quarantined (original copied to the quarantine folder), dropped, duplicate, failed
            stage = res.status if res.status in ("quarantined", "dropped") else "dropped" if res.status == "duplicate" \
                else "failed"
            self.queue.move(row, stage)
            state.record(row.key, res.status, "", res.category, res.attempts)
            if res.status not in ("dropped", "duplicate"):
                log.warning("instance from %s %s (%s)", row.calling_aet, res.status, res.category or "error")
        path.unlink(missing_ok=True)  # the original is kept only as long as it is needed
        return True

    def _forward(self, state, audit, failures: int) -> bool:
        """One batch; False when the destination is unavailable (the batch stays queued)."""
        rows = self.queue.rows("outbox", self.opts.batch)
        sent = refused = 0
        try:
            for row in rows:
                if self._stop.is_set():
                    break
                path = self.queue.outbox / row.relpath
                item = self.keys.hash_hex("path:" + str(self.queue.inbox_path(row.key)))
                try:
                    self.dest.send(path, row.relpath)
                except StorageError as e:
                    refused += 1
                    _keep_refused(path, self.opts.spool / "refused" / row.relpath)
                    self.queue.move(row, "failed", attempts=1)
                    state.record(row.key, "failed", row.relpath, "forward-refused", 1)
                    audit.append("forward-refused", item=item, output=row.relpath, reason=str(e))
                    continue
                except FileNotFoundError:
                    self.queue.move(row, "failed")
                    audit.append("forward-refused", item=item, output=row.relpath, reason="outbox file missing")
                    continue
                self.queue.move(row, "sent", attempts=1)
                state.record(row.key, "done", row.relpath, "", row.attempts + 1)
                audit.append("forwarded", item=item, output=row.relpath, attempts=row.attempts + 1)
                path.unlink(missing_ok=True)
                sent += 1
        except TransientError as e:
            for row in rows[sent + refused:]:
                self.queue.move(row, "outbox", attempts=1)
                break  # one attempt counted, on the instance that met the outage
            counts = self.queue.counts()
            log.warning("destination unavailable (%s): %d instance(s) queued; retry %d with backoff",
                        e, counts.get("outbox", 0) + counts.get("received", 0), failures + 1)
            if sent:
                log.info("forwarded %d instance(s) before the outage", sent)
            return False
        if sent or refused:
            log.info("forwarded %d instance(s), %d refused by the destination; queue %s", sent, refused,
                     _fmt_counts(self.queue.counts()))
        return True

    # ---- lifecycle ----

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # no new instances; an unanswered C-STORE is resent by its sender
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.queue.close()

    def wait_idle(self, timeout: float) -> bool:
        """For tests and draining: True once nothing is left to de-identify or forward."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.queue.counts()
            if not c.get("received") and not c.get("outbox"):
                return True
            time.sleep(0.1)
        return False


def _transfer_syntaxes(all_ts: list[str]) -> list[str]:
    """pynetdicom accepts the first of the acceptor's syntaxes that a context proposes:
    Explicit VR Little Endian first (what most modalities hold, kept as it is; Implicit
    first would make a sender such as storescu convert), Implicit VR last."""
    explicit, implicit = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
    return [explicit, *(t for t in all_ts if t not in (explicit, implicit)), implicit]


def _keep_refused(path: Path, target: Path) -> None:
    """A de-identified instance the destination refused for good stays for the operator
    (it holds no PHI: it passed verification)."""
    import os

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except OSError:
        pass


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"

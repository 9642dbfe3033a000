"""Runs the transform over many items: in-process for one worker, a process pool otherwise.

Workers get paths, never file bytes from the parent; each reads, transforms, writes to a
temporary name, re-reads and verifies, and only then renames into place. Results that
travel back are PHI-free (status, reason category, output path, counts).
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from phiscrub.dicom.reader import read_instance
from phiscrub.errors import DroppedByPolicy, PhiscrubError
from phiscrub.keys import KeyRing
from phiscrub.pipeline.sinks import atomic_write, flush, publish, write_temp
from phiscrub.pipeline.verify import collect_probe, verify_output
from phiscrub.policy import annex_e
from phiscrub.policy.config import Config
from phiscrub.transform import transform_dataset


@dataclass(frozen=True)
class Job:
    config: Config
    keys: KeyRing
    policy_hash: str
    dst: Path
    quarantine: Path | None = None
    durable: bool = False  # fsync every file (else batched: see sinks)
    in_place: bool = False  # slides: rewrite the source (journalled) instead of copying it


@dataclass
class ItemResult:
    source: str  # only ever shown on the console, never written under dst
    source_hash: str
    size: int
    status: str  # done | failed | quarantined
    reason: str = ""
    category: str = ""
    relpath: str = ""
    manifest: dict | None = None


_JOB: Job | None = None


def _init(job: Job, ocr_threads: int = 0) -> None:
    global _JOB
    _JOB = job
    warnings.simplefilter("ignore")
    if ocr_threads:  # share the cores between workers instead of oversubscribing them
        os.environ.setdefault("PHISCRUB_OCR_THREADS", str(ocr_threads))


def process_path(path: str, job: Job | None = None) -> ItemResult:
    job = job or _JOB
    assert job is not None
    src_hash = job.keys.hash_hex("path:" + os.path.abspath(path))
    routed = _other_kind(path, job, src_hash)  # slides and annotation files, by content
    if routed is not None:
        return routed
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return ItemResult(path, src_hash, 0, "failed", f"cannot read ({e.strerror})", "io")
    try:
        src = read_instance(data)
        probe = _probe(src, job)  # before the transform changes the dataset in place
        out = transform_dataset(src, job.config, job.keys, job.policy_hash)
        target = job.dst / out.relpath
        tmp = write_temp(target, out.data, job.durable)
        try:
            written = tmp.read_bytes()  # the verifier reads what storage holds, not our buffer
            reasons = verify_output(written, out.relpath, probe)
            if reasons:
                raise _Quarantine("; ".join(reasons))
            publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return ItemResult(path, src_hash, len(data), "done", relpath=out.relpath,
                          manifest=out.manifest)
    except _Quarantine as q:
        _quarantine_copy(path, data, job, src_hash)
        return ItemResult(path, src_hash, len(data), "quarantined", str(q), "verification")
    except DroppedByPolicy as e:  # not a failure: nothing is written and no copy is kept
        return ItemResult(path, src_hash, len(data), "dropped", str(e), e.reason)
    except PhiscrubError as e:
        _quarantine_copy(path, data, job, src_hash)
        return ItemResult(path, src_hash, len(data), "quarantined", str(e), e.reason)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
        _quarantine_copy(path, data, job, src_hash)
        return ItemResult(path, src_hash, len(data), "failed",
                          f"internal error ({type(e).__name__})", "internal")


class _Quarantine(Exception):
    pass


def _other_kind(path: str, job: Job, src_hash: str) -> ItemResult | None:
    """Slides (never read whole: they are gigabytes) and annotation files take their own
    path; None means the item is treated as DICOM."""
    import dataclasses

    from phiscrub.wsi import registry

    p = Path(path)
    try:
        size = p.stat().st_size
        fmt = registry.detect(p)
    except OSError as e:
        return ItemResult(path, src_hash, 0, "failed", f"cannot read ({e.strerror})", "io")
    if fmt is not None:
        from phiscrub.wsi.registry import SlideJob
        from phiscrub.wsi.slide import deidentify_slide

        try:
            m = deidentify_slide(p, job.dst, SlideJob(job.keys, job.config, job.in_place))
        except PhiscrubError as e:
            _quarantine_file(p, job, src_hash)
            cat = "verification" if e.reason == "verification-failed" else e.reason
            return ItemResult(path, src_hash, size, "quarantined", str(e), cat)
        except Exception as e:  # noqa: BLE001 - one bad slide must not stop the run
            _quarantine_file(p, job, src_hash)
            return ItemResult(path, src_hash, size, "failed", f"internal error ({type(e).__name__})", "internal")
        return ItemResult(path, src_hash, size, "done", relpath=m.outputs[0] if m.outputs else "",
                          manifest=dataclasses.asdict(m))
    from phiscrub.wsi.annotations import scrub_annotation, sniff_annotation

    kind = sniff_annotation(p)
    if kind is None:
        return None
    try:
        data = p.read_bytes()
        out, manifest = scrub_annotation(data, kind, job.keys, job.config)
        import hashlib

        rel = job.keys.token("annotation", hashlib.sha256(data).hexdigest()) + p.suffix.lower()[:12]
        tmp = write_temp(job.dst / rel, out, job.durable)
        try:
            publish(tmp, job.dst / rel)
        finally:
            tmp.unlink(missing_ok=True)
        return ItemResult(path, src_hash, size, "done", relpath=rel, manifest=manifest)
    except PhiscrubError as e:
        _quarantine_file(p, job, src_hash)
        return ItemResult(path, src_hash, size, "quarantined", str(e), e.reason)
    except OSError as e:
        return ItemResult(path, src_hash, size, "failed", f"cannot read ({e.strerror})", "io")


def _quarantine_file(path: Path, job: Job, src_hash: str) -> None:
    """Like _quarantine_copy, streamed by the kernel: a slide does not fit in memory."""
    import shutil

    if job.quarantine is None or not path.exists():
        return
    job.quarantine.mkdir(parents=True, exist_ok=True)
    tmp = job.quarantine / f".partial-{src_hash}.bin"
    shutil.copyfile(path, tmp)
    os.replace(tmp, job.quarantine / f"{src_hash}.bin")


def _probe(src, job: Job):
    iod = annex_e.iod_for_sop_class(src.get("SOPClassUID"))
    return collect_probe(src, job.config.policy, iod)


def _quarantine_copy(path: str, data: bytes, job: Job, src_hash: str) -> None:
    """Originals are PHI: they go only to an operator-chosen folder outside the outputs,
    under their keyed hash, never under the output folder."""
    if job.quarantine is None:
        return
    job.quarantine.mkdir(parents=True, exist_ok=True)
    atomic_write(job.quarantine / f"{src_hash}.bin", data)


def run(
    paths: Iterable[Path], job: Job, workers: int, on_result: Callable[[ItemResult], None]
) -> None:
    """Streams results as they come; at most a few batches are in flight at once, so the
    parent's memory does not grow with the corpus."""
    items = [str(p) for p in paths]
    if workers <= 1 or len(items) < 8:
        for p in items:
            on_result(process_path(p, job))
        flush()
        return
    batch = max(1, min(32, len(items) // (workers * 8)))
    chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
    threads = max(1, default_workers() // workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init, initargs=(job, threads)) as ex:
        pending: deque = deque()
        it = iter(chunks)
        for chunk in islice(it, workers * 3):
            pending.append(ex.submit(_process_chunk, chunk))
        while pending:
            for res in pending.popleft().result():
                on_result(res)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(ex.submit(_process_chunk, nxt))
    flush()  # os.sync is system-wide: it covers what every worker wrote


def _process_chunk(paths: list[str]) -> list[ItemResult]:
    return [process_path(p) for p in paths]


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1

"""Engines that run process_item over many items: in this process, a local process pool, or
a Dask distributed cluster. Each streams results back as they come, with a bounded number
of tasks in flight, so the parent's memory does not grow with the corpus.

Crash isolation. A native codec that segfaults kills the process it runs in. In the pool,
that breaks every task in flight (BrokenProcessPool); the items of those tasks are then run
again one at a time in a fresh single-worker pool, so only the item that crashes again
fails. On Dask, the scheduler reschedules a dead worker's tasks and gives up after
``distributed.scheduler.allowed-failures`` deaths (KilledWorker); the items of a task that
gave up become suspects, run one at a time as single-item tasks, and only a suspect that
kills its workers again fails.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from phiscrub.extras import require
from phiscrub.pipeline import runner
from phiscrub.pipeline.runner import ItemResult, Job, Task, process_item
from phiscrub.pipeline.sinks import flush
from phiscrub.pipeline.storage import Item

OnResult = Callable[[Any], None]
# work(element, job) -> result, run on every element; on_crash(element, job) -> result, the
# result of an element that killed its worker. Both are module-level functions (pickled by
# name): the main pass's process_item, or the pre-pass's header and content reads.
Work = Callable[[Any, Job], Any]
CRASH_REASON = "the worker process died while processing this item (native crash)"


def crashed(item: Item | Task, job: Job) -> ItemResult:
    if isinstance(item, Task):
        item = item.item
    return ItemResult(item.uri, job.keys.hash_hex("path:" + item.uri), item.size, "failed", CRASH_REASON, "crash")


def run_inline(items: list, job: Job, on_result: OnResult, work: Work = process_item) -> None:
    """One worker, in this process: no isolation (a native crash ends the run), for debugging."""
    for it in items:
        on_result(work(it, job))
    flush()


def _process_chunk(items: list, work: Work = process_item) -> list:
    return [work(it, runner._JOB) for it in items]


def _batch(n: int, slots: int, most: int) -> int:
    return max(1, min(most, n // (slots * 8)))


def run_pool(items: list, job: Job, workers: int, on_result: OnResult, work: Work = process_item,
             on_crash: Work = crashed) -> None:
    batch = _batch(len(items), workers, 32)
    chunks = deque(items[i:i + batch] for i in range(0, len(items), batch))
    threads = max(1, runner.default_workers() // workers)
    while chunks:
        suspects = _pool_pass(chunks, job, workers, threads, on_result, work)
        if suspects:
            _isolate(suspects, job, threads, on_result, work, on_crash)
            _sweep(job)
    flush()  # os.sync is system-wide: it covers what every worker wrote


def _pool(job: Job, workers: int, threads: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, initializer=runner._init, initargs=(job, threads, os.getpid()))


def _pool_pass(chunks: deque, job: Job, workers: int, threads: int, on_result: OnResult, work: Work) -> list:
    """Runs chunks until they are all done (returns []) or the pool breaks (returns the
    items whose results were lost with it; the rest stay queued)."""
    pending: deque = deque()
    with _pool(job, workers, threads) as ex:
        try:
            while chunks or pending:
                while chunks and len(pending) < workers * 3:
                    chunk = chunks.popleft()
                    try:
                        pending.append((ex.submit(_process_chunk, chunk, work), chunk))
                    except BrokenProcessPool:
                        chunks.appendleft(chunk)
                        raise
                fut, _ = pending[0]
                results = fut.result()
                pending.popleft()
                for r in results:
                    on_result(r)
        except BrokenProcessPool:
            suspects: list = []
            for fut, chunk in pending:
                if fut.done() and not fut.cancelled() and fut.exception(timeout=0) is None:
                    for r in fut.result():
                        on_result(r)
                else:
                    suspects.extend(chunk)
            return suspects
    return []


def _isolate(suspects: list, job: Job, threads: int, on_result: OnResult, work: Work, on_crash: Work) -> None:
    """Each suspect alone in a one-worker pool: a crash now names its item."""
    ex = _pool(job, 1, threads)
    try:
        for it in suspects:
            try:
                results = ex.submit(_process_chunk, [it], work).result()
            except BrokenProcessPool:
                ex.shutdown(wait=True)
                ex = _pool(job, 1, threads)
                results = [on_crash(it, job)]
            for r in results:
                on_result(r)
    finally:
        ex.shutdown(wait=True)


def _sweep(job: Job) -> None:
    """A killed worker may have left a hidden temporary file: no worker runs now."""
    from phiscrub.pipeline.storage import open_sink

    sink = open_sink(str(job.dst))
    sweep = getattr(sink, "sweep_partials", None)
    if sweep is not None:
        sweep()


def _dask_chunk(items: list, job: Job, work: Work = process_item) -> list:
    import warnings

    warnings.simplefilter("ignore")
    return [work(it, job) for it in items]


def run_dask(items: list, job: Job, scheduler: str, on_result: OnResult, work: Work = process_item,
             on_crash: Work = crashed) -> None:
    """Tasks carry the job and item URIs (a few hundred bytes); workers read and write
    storage themselves, so file bytes never pass through the scheduler. Use a tls:// address
    on a network you do not trust: the job holds the pseudonym key."""
    require("dask", what="--scheduler")  # the [dask] extra: a core install runs the local pool only
    from distributed import Client, as_completed
    from distributed.scheduler import KilledWorker

    with Client(scheduler, set_as_default=False, timeout=60) as client:
        slots = max(1, sum(client.nthreads().values()))
        batch = _batch(len(items), slots, 16)
        chunks = deque(items[i:i + batch] for i in range(0, len(items), batch))
        owner: dict = {}
        suspects: deque = deque()
        isolated: list = []  # the key of the one suspect in flight on its own, if any
        ac = as_completed(loop=client.loop)  # this client's loop: it is not the default client

        def submit(chunk: list):
            fut = client.submit(_dask_chunk, chunk, job, work, pure=False)
            owner[fut.key] = chunk
            ac.add(fut)
            return fut.key

        def top_up() -> None:
            if suspects and not isolated:
                isolated.append(submit([suspects.popleft()]))
            while chunks and len(owner) < slots * 4:
                submit(chunks.popleft())

        top_up()
        for fut in ac:
            chunk = owner.pop(fut.key)
            alone = fut.key in isolated
            if alone:
                isolated.clear()
            try:
                results = fut.result()
            except KilledWorker:
                # a task queued on a worker that another task crashed is charged too; only
                # an item that kills workers while it is the one suspect in flight is failed
                results = [on_crash(chunk[0], job)] if alone else []
                if not alone:
                    suspects.extend(chunk)
            except Exception as e:  # noqa: BLE001 - a lost task fails its items, not the run
                results = [_lost(it, job, work, on_crash, type(e).__name__) for it in chunk]
            fut.release()
            for r in results:
                on_result(r)
            top_up()


def _lost(it, job: Job, work: Work, on_crash: Work, why: str):
    """A task the cluster lost: its main-pass items fail with the cluster's error; a
    pre-pass element gets its 'no result' (the main pass reads the item again)."""
    if work is not process_item:
        return on_crash(it, job)
    item = it.item if isinstance(it, Task) else it
    return ItemResult(item.uri, job.keys.hash_hex("path:" + item.uri), item.size, "failed", f"cluster error ({why})", "cluster")

"""From the items a source lists to the tasks a run executes: the job-wide pre-pass, study
selection, and resume (what an earlier run finished, whose study has not changed since).

Shared by the CLI and the service's jobs, so both decide duplicates, study terms and
resumption the same way. Item URIs stay in this process's memory; the state holds keyed
hashes of them only.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from phiscrub.pipeline import prepass
from phiscrub.pipeline.runner import Job, Task
from phiscrub.pipeline.state import JobState
from phiscrub.pipeline.storage import Item

RunWork = prepass.Runner  # run_work(elements, work, on_crash, on_result): the job's engine over a pre-pass read
# item key -> (relpath, study digest; None where the store keeps none) of a finished item
DoneLookup = Callable[[str], "tuple[str, str | None] | None"]


@dataclass
class Plan:
    tasks: list[Task] = field(default_factory=list)
    item_keys: dict[str, str] = field(default_factory=dict)  # URI -> state key, for the items to run
    digests: dict[str, str] = field(default_factory=dict)  # URI -> study digest, recorded with the result
    skipped: int = 0
    excluded: int = 0
    stats: dict = field(default_factory=dict)  # PHI-free counts of the pre-pass, for the audit


def plan_job(found: list[Item], job: Job, run_work: RunWork, done: DoneLookup, exists: Callable[[str], bool],
             restart: bool = False, wanted: frozenset[str] | None = None) -> Plan:
    plan = Plan()
    listed = []
    for it in found:
        if wanted is not None and it.study and it.study not in wanted:
            plan.excluded += 1  # the source said which study: not even its header is read
            continue
        listed.append(it)
    t0 = time.perf_counter()
    index = prepass.build(listed, job, run_work)
    if wanted is not None:  # the header says which study: others are neither read nor counted in the index
        keep = []
        for it in listed:
            h = index.headers.get(it.uri)
            if h is not None and h.study not in wanted:
                plan.excluded += 1
                index.headers.pop(it.uri)
                index.by_sop[h.sop].remove(it.uri)
                continue
            keep.append(it)
        listed = keep
    keys = {it.uri: (JobState.key_of(job.keys, it, job.policy_hash) if it.version or it.size else "") for it in listed}

    def released_before(uri: str) -> bool:
        row = None if restart or not keys.get(uri) else done(keys[uri])
        return row is not None and row[0] != "" and exists(row[0])

    directives = prepass.decide(index, {it.uri: it for it in listed}, job, run_work, released_before)
    roles = Counter(d.role for d in directives.values())
    plan.stats = {"headers": len(index.headers), "items": len(listed),
                  "studies": len({h.study for h in index.headers.values()}),
                  "shared_sop_uids": len(index.shared), "duplicates": roles["duplicate"],
                  "conflicts": roles["conflict"], "seconds": round(time.perf_counter() - t0, 3)}
    order = {it.uri: i for i, it in enumerate(listed)}

    def study_of(it: Item) -> str:
        h = index.headers.get(it.uri)
        return h.study if h is not None else it.study

    # a study's items side by side: its terms are pickled once for a chunk of them
    for it in sorted(listed, key=lambda it: (study_of(it), order[it.uri])):
        d = directives.get(it.uri)
        k = keys[it.uri]
        row = None if restart or not k else done(k)
        digest = d.study_digest if d is not None else ""
        if row is not None and (row[0] == "" or exists(row[0])) and row[1] in (None, digest):
            plan.skipped += 1  # done by an earlier run with this item, policy, key and study
            continue
        plan.item_keys[it.uri] = k
        plan.digests[it.uri] = digest
        plan.tasks.append(Task(it, d))
    return plan

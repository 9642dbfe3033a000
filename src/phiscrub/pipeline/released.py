"""Duplicate SOP Instance UIDs where no pre-pass can see the whole job: the DICOM gateway and
the upload service take one instance at a time, and what they released may already be at
its destination. So the first instance released with a UID stays released; a later copy
with the same dataset is recorded as a duplicate, one with other content is quarantined.
The job state keeps, per UID, a keyed hash of it and the content digest, never the UID.
"""

from __future__ import annotations

from collections.abc import Callable

from phiscrub.pipeline import prepass
from phiscrub.pipeline.runner import ItemResult, Job, Task, process_item
from phiscrub.pipeline.storage import Item

Claim = Callable[[str, str, str], str]  # (sop hash, digest, item key) -> process | duplicate | conflict
Unclaim = Callable[[str, str], None]


def process_single(item: Item, job: Job, item_key: str, claim: Claim, unclaim: Unclaim) -> ItemResult:
    h = prepass.read_header(item, job)
    copy = prepass.check_copy(item, job) if h.sop else prepass.Copy(item.uri)
    if not copy.digest:  # not DICOM, or damaged: the usual path says why
        return process_item(item, job)
    sop = job.keys.hash_hex("sop:" + h.sop, 32)
    who = item_key or job.keys.hash_hex("path:" + item.uri)
    role = claim(sop, copy.digest, who)
    res = process_item(Task(item, prepass.Directive(role)), job)
    if role == "process" and res.status != "done":
        unclaim(sop, who)
    return res

"""Append-only, hash-chained audit log: each record carries the hash of the one before,
so a removed, edited, inserted or reordered line breaks the chain. Records hold tags,
actions, counts and keyed hashes, never values or source paths.

A plain hash chain can be recomputed by whoever edits the file, and cutting records off
the end leaves a valid chain. So, when the run's key is given, each record also carries
an HMAC of its hash (only a key holder can forge one), and closing the log writes a keyed
head anchor (``audit.head.json``: last sequence number and hash) that a truncated tail no
longer reaches. A line torn by a kill -9 is not a record: on the next open it is moved
beside the log (never deleted) and the gap is itself recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phiscrub.keys import KeyRing

GENESIS = "0" * 64
HEAD_NAME = "audit.head.json"
_MAC_DOMAIN = "audit-chain"


def _body(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":"))


def _hash(rec: dict) -> str:
    body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
    return hashlib.sha256(_body(body).encode()).hexdigest()


def _mac(keys: KeyRing, value: str) -> str:
    return keys.digest(_MAC_DOMAIN, value).hex()[:32]


def head_path(log: Path) -> Path:
    return log.with_name(HEAD_NAME)


class AuditLog:
    def __init__(self, path: Path, keys: KeyRing | None = None) -> None:
        self.path = path
        self.keys = keys
        self.prev = GENESIS
        self.seq = 0
        torn = _split_torn_tail(path)
        if path.exists():
            with path.open("rb") as fh:
                for line in fh:
                    if line.strip():
                        rec = json.loads(line)
                        self.prev, self.seq = rec["hash"], rec["seq"]
        self._fh = path.open("a")
        if torn:
            self.append("torn-tail", bytes=len(torn), sha256=hashlib.sha256(torn).hexdigest(),
                        moved_to=_torn_name(path, torn))
        anchor = _read_head(path)
        if anchor is not None and not _anchor_reached(path, anchor):
            # the log is shorter than, or differs from, what the last close anchored:
            # say so in the chain itself before anything is appended after it
            self.append("anchor-mismatch", anchored_seq=anchor.get("seq"))

    def append(self, event: str, **fields: object) -> dict:
        self.seq += 1
        rec = {"seq": self.seq, "time": round(time.time(), 3), "event": event, **fields, "prev": self.prev}
        rec["hash"] = _hash(rec)
        if self.keys is not None:
            rec["mac"] = _mac(self.keys, rec["hash"])
        # one write and flush per record: a kill -9 loses at most the line being written
        self._fh.write(_body(rec) + "\n")
        self._fh.flush()
        self.prev = rec["hash"]
        return rec

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        head = {"seq": self.seq, "hash": self.prev}
        if self.keys is not None:
            head["mac"] = _mac(self.keys, f"{self.seq}:{self.prev}")
        from phiscrub.pipeline.sinks import atomic_write

        atomic_write(head_path(self.path), (_body(head) + "\n").encode())


def _split_torn_tail(path: Path) -> bytes:
    """Cuts an unterminated last line off the log and returns it (b'' if none)."""
    if not path.exists() or path.stat().st_size == 0:
        return b""
    with path.open("rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) == b"\n":
            return b""
        size = fh.seek(0, os.SEEK_END)
        back = min(size, 1 << 20)
        fh.seek(size - back)
        chunk = fh.read(back)
        cut = chunk.rfind(b"\n")
        start = size - back + cut + 1 if cut >= 0 else 0
        fh.seek(start)
        tail = fh.read()
        target = path.with_name(_torn_name(path, tail))
        if not target.exists():  # saved before the log is cut, so it is never lost
            from phiscrub.pipeline.sinks import atomic_write

            atomic_write(target, tail)
        fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())
    return tail


def _torn_name(path: Path, tail: bytes) -> str:
    return f"{path.name}.torn-{hashlib.sha256(tail).hexdigest()[:12]}"


def _read_head(path: Path) -> dict | None:
    try:
        return json.loads(head_path(path).read_text())
    except (OSError, ValueError):
        return None


def _anchor_reached(path: Path, anchor: dict) -> bool:
    for rec in _records(path):
        if rec.get("seq") == anchor.get("seq"):
            return rec.get("hash") == anchor.get("hash")
    return anchor.get("seq") == 0


def _records(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    return


def read_records(path: Path) -> list[dict]:
    """Every complete record, in file order (for the report and the export)."""
    return list(_records(path))


@dataclass
class ChainCheck:
    ok: bool
    records: int
    first_bad: int | None = None  # sequence number of the first record that fails
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    keyed: bool = False  # record MACs and the head anchor's MAC were checked


def check_log(path: Path, keys: KeyRing | None = None) -> ChainCheck:
    """Walks the chain: sequence numbers, links, hashes, MACs (with the key), and the head
    anchor. An edit, a removal, an insertion or a reordering breaks a link or a hash at
    the first record touched; a truncated tail no longer reaches the anchor."""
    prev, expect, n = GENESIS, 1, 0
    try:
        raw = path.read_bytes()
    except OSError as e:
        return ChainCheck(False, 0, 1, f"cannot read the audit log ({e.strerror})")
    lines = raw.split(b"\n")
    torn = lines[-1] != b""
    if not torn:
        lines = lines[:-1]
    notes: list[str] = []
    for i, line in enumerate(lines):
        if not line.strip():
            return ChainCheck(False, n, expect, "blank line inside the log")
        try:
            rec = json.loads(line)
            seq, h = rec["seq"], rec["hash"]
        except (ValueError, KeyError, TypeError):
            what = "a torn last line (unterminated record)" if torn and i == len(lines) - 1 else "a line that is not a record"
            return ChainCheck(False, n, expect, what)
        if seq != expect:
            return ChainCheck(False, n, expect, f"sequence number {seq} where {expect} was expected (removed, inserted or reordered)")
        if rec.get("prev") != prev:
            return ChainCheck(False, n, seq, "link to the previous record is broken")
        if _hash(rec) != h:
            return ChainCheck(False, n, seq, "record content does not match its hash (edited)")
        if keys is not None and not hmac.compare_digest(str(rec.get("mac", "")), _mac(keys, h)):
            return ChainCheck(False, n, seq, "record MAC does not verify (rewritten without the key, or another key)")
        if rec.get("event") == "anchor-mismatch":
            return ChainCheck(False, n, seq, "the log did not reach its last anchor when it was reopened (truncated or rewritten)")
        if rec.get("event") == "torn-tail":
            notes.append(f"seq {seq}: a record torn by an interrupted run was moved aside ({rec.get('moved_to')})")
        prev, expect, n = h, expect + 1, n + 1
    anchor = _read_head(path)
    if anchor is None:
        notes.append("no head anchor (the last run did not close the log): a truncated tail cannot be ruled out")
    else:
        aseq = anchor.get("seq", 0)
        if keys is not None and not hmac.compare_digest(str(anchor.get("mac", "")), _mac(keys, f"{aseq}:{anchor.get('hash')}")):
            return ChainCheck(False, n, aseq, "head anchor MAC does not verify", notes, True)
        if aseq > n:
            return ChainCheck(False, n, n + 1, f"log ends at seq {n} but was anchored at seq {aseq} (truncated)", notes, keys is not None)
        if aseq and _seq_hash(lines, aseq) != anchor.get("hash"):
            return ChainCheck(False, n, aseq, "record at the anchored sequence number differs from the anchor", notes, keys is not None)
    return ChainCheck(True, n, None, "", notes, keys is not None)


def _seq_hash(lines: list[bytes], seq: int) -> str | None:
    try:
        return json.loads(lines[seq - 1]).get("hash")
    except (IndexError, ValueError):
        return None


def verify_chain(path: Path) -> tuple[bool, int]:
    """(intact, records checked): the keyless chain walk."""
    c = check_log(path)
    return c.ok, c.records


# fields of an item record; anything else an ItemResult carries (the broker's pairs of
# original and pseudonymous IDs above all) never reaches the audit
ITEM_FIELDS = ("item", "size", "status", "category", "reason", "output", "policy", "version", "actions",
               "phi", "pixel_boxes", "verification", "seconds", "at_s", "manifest")


def item_record(result: object, *, policy_hash: str, version: str, at_s: float | None = None) -> dict:
    """The audit fields of one item, built from a runner ItemResult by name (so a runner
    that adds ``seconds``, ``verification`` or ``output_uri`` is picked up as it comes).

    Source URI: keyed hash only. Output: the relative path or URI under the destination,
    which is built from pseudonyms and new UIDs only. Reasons are typed error messages,
    which never carry a value."""
    from phiscrub.pipeline.phi_categories import categorize, pixel_boxes

    g = lambda name, default=None: getattr(result, name, default)  # noqa: E731
    manifest = g("manifest")
    status = g("status", "")
    verification = g("verification")
    if verification is None:
        # the runner releases only verified outputs, and quarantines on a failed check
        if status == "done":
            verification = "passed"
        elif g("category") in ("verification", "verification-failed"):
            verification = "failed"
        else:
            verification = "not-run"
    rec = {
        "item": g("source_hash", ""),
        "size": g("size", 0),
        "status": status,
        "category": g("category", ""),
        "reason": g("reason", ""),
        "output": g("output_uri", "") or g("relpath", ""),
        "policy": policy_hash,
        "version": version,
        "actions": (manifest or {}).get("actions") or (manifest or {}).get("fields") or {},
        "phi": categorize(manifest),
        "pixel_boxes": pixel_boxes(manifest),
        "verification": verification,
        "seconds": g("seconds"),
        "at_s": None if at_s is None else round(at_s, 3),
        # the manifest's actions are the record's own 'actions': stored once
        "manifest": {k: v for k, v in manifest.items() if k != "actions"} if isinstance(manifest, dict) else manifest,
    }
    return {k: rec[k] for k in ITEM_FIELDS}

"""Append-only, hash-chained audit log: each record carries the hash of the one before,
so a removed or edited line breaks the chain. Records hold tags, actions, counts and
keyed hashes, never values or source paths."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

GENESIS = "0" * 64


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.prev = GENESIS
        self.seq = 0
        if path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.prev, self.seq = rec["hash"], rec["seq"]
        self._fh = path.open("a")

    def append(self, event: str, **fields: object) -> dict:
        self.seq += 1
        rec = {"seq": self.seq, "time": round(time.time(), 3), "event": event, **fields,
               "prev": self.prev}
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        rec["hash"] = hashlib.sha256(body.encode()).hexdigest()
        self._fh.write(json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n")
        self.prev = rec["hash"]
        return rec

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


def verify_chain(path: Path) -> tuple[bool, int]:
    """(intact, records checked)."""
    prev, n = GENESIS, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        h = rec.pop("hash")
        if rec["prev"] != prev:
            return False, n
        body = json.dumps(rec, sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(body.encode()).hexdigest() != h:
            return False, n
        prev, n = h, n + 1
    return True, n

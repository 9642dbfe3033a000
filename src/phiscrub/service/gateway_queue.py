"""The gateway's durable queue: a spool folder of files and an SQLite table of their stages.

Why: a C-STORE success tells the modality it may delete its copy, so an instance must be
on disk, under its final name and in the queue table, before the gateway answers 0x0000.
Files are written under a hidden temporary name, fsynced, renamed and the folder fsynced;
the row is committed with synchronous=FULL. A kill -9 at any point then leaves either no
row (the modality got no success and sends again) or a row whose file is whole.

Stages: ``received`` (an original in ``in/``) -> ``outbox`` (its verified de-identified
output in ``out/``, original deleted) -> ``sent``; or ``quarantined`` / ``dropped`` /
``failed`` (final). Rows hold keyed hashes, stages, counts, the calling AE title and the
output's relative path (pseudonyms and new UIDs only), never a value from a header.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from phiscrub.pipeline.sinks import fsync_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    stage TEXT NOT NULL,
    relpath TEXT NOT NULL DEFAULT '',
    calling_aet TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    received REAL NOT NULL,
    updated REAL NOT NULL
)
"""
STAGES = ("received", "outbox", "sent", "quarantined", "dropped", "failed")
PARTIAL = ".partial-"


@dataclass(frozen=True)
class Row:
    id: int
    key: str
    stage: str
    relpath: str
    calling_aet: str
    size: int
    attempts: int


class SpoolQueue:
    """Thread-safe: association threads add, the pipeline thread moves rows along."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox = root / "in"
        self.outbox = root / "out"
        for d in (root, self.inbox, self.outbox):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)  # originals are PHI: only the gateway's user reads them
        self._lock = threading.Lock()
        self.db = sqlite3.connect(root / "queue.sqlite", check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power loss
        self.db.execute(_SCHEMA)
        self._sweep()

    def _sweep(self) -> None:
        """Temporary files of a killed process, and originals whose row never committed
        (no success was returned for them: the sender sends them again)."""
        with self._lock:
            known = {k for (k,) in self.db.execute("SELECT key FROM queue WHERE stage='received'")}
        for f in self.inbox.iterdir():
            if f.name.startswith(PARTIAL) or (f.suffix == ".dcm" and f.stem not in known):
                f.unlink(missing_ok=True)
        with self._lock:  # outputs already forwarded whose row moved on before the file went
            queued = {r for (r,) in self.db.execute("SELECT relpath FROM queue WHERE stage='outbox'")}
        for dirpath, _, files in os.walk(self.outbox):
            for name in files:
                full = os.path.join(dirpath, name)
                if name.startswith(PARTIAL) or os.path.relpath(full, self.outbox) not in queued:
                    os.unlink(full)

    def inbox_path(self, key: str) -> Path:
        return self.inbox / f"{key}.dcm"

    def add(self, key: str, data: bytes, calling_aet: str) -> bool:
        """Durably stores one received instance; False if the same bytes were received
        before (nothing is done twice)."""
        with self._lock:
            if self.db.execute("SELECT 1 FROM queue WHERE key=?", (key,)).fetchone():
                return False
        target = self.inbox_path(key)
        tmp = self.inbox / f"{PARTIAL}{threading.get_ident()}-{target.name}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        with self._lock:
            if self.db.execute("SELECT 1 FROM queue WHERE key=?", (key,)).fetchone():
                tmp.unlink(missing_ok=True)  # the same instance over two associations at once
                return False
            os.replace(tmp, target)
            fsync_dir(self.inbox)
            now = time.time()
            self.db.execute("INSERT INTO queue(key, stage, calling_aet, size, received, updated) VALUES (?,?,?,?,?,?)",
                            (key, "received", calling_aet, len(data), now, now))
        return True

    def rows(self, stage: str, limit: int = 1000) -> list[Row]:
        with self._lock:
            cur = self.db.execute("SELECT id, key, stage, relpath, calling_aet, size, attempts FROM queue"
                                  " WHERE stage=? ORDER BY id LIMIT ?", (stage, limit))
            return [Row(*r) for r in cur.fetchall()]

    def move(self, row: Row, stage: str, relpath: str | None = None, attempts: int = 0) -> None:
        assert stage in STAGES
        with self._lock:
            self.db.execute("UPDATE queue SET stage=?, relpath=COALESCE(?, relpath), attempts=attempts+?, updated=?"
                            " WHERE id=?", (stage, relpath, attempts, time.time(), row.id))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT stage, COUNT(*) FROM queue GROUP BY stage").fetchall())

    def close(self) -> None:
        with self._lock:
            self.db.close()

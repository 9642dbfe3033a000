"""Job state in SQLite beside the outputs, so a rerun resumes instead of starting over.

An item is keyed by a keyed hash of (source path, size, mtime, policy hash): the database
holds no source path, and a changed file or a changed policy is simply a new item.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from phiscrub.keys import KeyRing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    relpath TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
)
"""


class JobState:
    COMMIT_EVERY = 200

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self._pending = 0

    @staticmethod
    def item_key(keys: KeyRing, path: Path, policy_hash: str) -> str:
        st = os.stat(path)
        return keys.hash_hex(f"item:{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}:{policy_hash}", 32)

    def done_relpath(self, key: str) -> str | None:
        # a dropped item (a label image the policy removes) is finished too; its relpath is ''
        row = self.db.execute("SELECT relpath FROM items WHERE key=? AND status IN ('done', 'dropped')", (key,)).fetchone()
        return row[0] if row else None

    def record(self, key: str, status: str, relpath: str, category: str) -> None:
        self.db.execute(
            "INSERT INTO items(key, status, relpath, category, attempts, updated) VALUES (?,?,?,?,1,?)"
            " ON CONFLICT(key) DO UPDATE SET status=excluded.status, relpath=excluded.relpath,"
            " category=excluded.category, attempts=items.attempts+1, updated=excluded.updated",
            (key, status, relpath, category, time.time()),
        )
        self._pending += 1
        if self._pending >= self.COMMIT_EVERY:
            self.commit()

    def commit(self) -> None:
        os.sync()  # the outputs these rows call done reach the disk before the rows do
        self.db.commit()
        self._pending = 0

    def close(self) -> None:
        self.commit()
        self.db.close()

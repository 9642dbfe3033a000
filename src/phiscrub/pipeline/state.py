"""Job state in SQLite beside the outputs (or where --state points), so a rerun resumes
instead of starting over.

An item is keyed by a keyed hash of (source URI, size, version, policy hash): the version
is the mtime of a file, the generation or ETag of an object. The database holds no source
URI, and a changed file or a changed policy is simply a new item. Items are entered as
'pending' when a run starts; each result is committed as it comes (a kill -9 loses at most
the items in flight, whose outputs are redone identically), and the disk is flushed before
a commit at most every COMMIT_EVERY rows, so a power loss cannot leave a row calling done
an output that never reached the disk (a resumed run also checks that the output exists).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from phiscrub.keys import KeyRing
from phiscrub.pipeline.storage import Item

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

    @staticmethod
    def key_of(keys: KeyRing, item: Item, policy_hash: str) -> str:
        """The same key as item_key for a local file (its URI is its absolute path and its
        version the mtime in ns), so state written before storage backends still resumes."""
        return keys.hash_hex(f"item:{item.uri}:{item.size}:{item.version}:{policy_hash}", 32)

    def mark_pending(self, item_keys: list[str]) -> None:
        now = time.time()
        self.db.executemany("INSERT OR IGNORE INTO items(key, status, updated) VALUES (?, 'pending', ?)",
                            [(k, now) for k in item_keys])
        self.db.commit()

    def done_relpath(self, key: str) -> str | None:
        # a dropped item (a label image the policy removes) is finished too; its relpath is ''
        row = self.db.execute("SELECT relpath FROM items WHERE key=? AND status IN ('done', 'dropped')", (key,)).fetchone()
        return row[0] if row else None

    def record(self, key: str, status: str, relpath: str, category: str, attempts: int = 1) -> None:
        self.db.execute(
            "INSERT INTO items(key, status, relpath, category, attempts, updated) VALUES (?,?,?,?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET status=excluded.status, relpath=excluded.relpath,"
            " category=excluded.category, attempts=items.attempts+excluded.attempts, updated=excluded.updated",
            (key, status, relpath, category, attempts, time.time()),
        )
        self._pending += 1
        if self._pending >= self.COMMIT_EVERY:
            self.commit()
        else:
            self.db.commit()  # no fsync (WAL, synchronous=NORMAL): survives a killed process

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())

    def commit(self) -> None:
        os.sync()  # the outputs these rows call done reach the disk before the rows do
        self.db.commit()
        self._pending = 0

    def close(self) -> None:
        self.commit()
        self.db.close()

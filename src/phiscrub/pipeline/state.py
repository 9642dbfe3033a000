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

# SOP Instance UIDs released by a process that sees one instance at a time (the gateway, the
# upload service): keyed hash of the UID, the content digest, the state key of the item
_RELEASED_SCHEMA = "CREATE TABLE IF NOT EXISTS released (sop TEXT PRIMARY KEY, digest TEXT NOT NULL, item TEXT NOT NULL)"

# facts about the job as a whole (the key's fingerprint), one row each; never a source value
_META_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


class JobState:
    COMMIT_EVERY = 200

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)
        self.db.execute(_META_SCHEMA)
        self.db.execute(_RELEASED_SCHEMA)
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(items)")}
        if "study" not in cols:  # state written before the pre-pass: its items are redone once
            self.db.execute("ALTER TABLE items ADD COLUMN study TEXT NOT NULL DEFAULT ''")
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

    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        # committed at once: a fact about the whole job must not wait on the item batch
        self.db.execute("INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                        (name, value))
        self.db.commit()

    def mark_pending(self, item_keys: list[str]) -> None:
        now = time.time()
        self.db.executemany("INSERT OR IGNORE INTO items(key, status, updated) VALUES (?, 'pending', ?)",
                            [(k, now) for k in item_keys])
        self.db.commit()

    def done_relpath(self, key: str) -> str | None:
        # a dropped item (a label image the policy removes) is finished too; its relpath is ''
        row = self.done_row(key)
        return row[0] if row else None

    def done_row(self, key: str) -> tuple[str, str] | None:
        """(relpath, study digest) of an item an earlier run finished; the digest is the
        keyed digest of its study's values when it was written (prepass.terms_digest)."""
        row = self.db.execute("SELECT relpath, study FROM items WHERE key=? AND status IN ('done', 'dropped')",
                              (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def record(self, key: str, status: str, relpath: str, category: str, attempts: int = 1, study: str = "") -> None:
        self.db.execute(
            "INSERT INTO items(key, status, relpath, category, attempts, updated, study) VALUES (?,?,?,?,?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET status=excluded.status, relpath=excluded.relpath,"
            " category=excluded.category, attempts=items.attempts+excluded.attempts, updated=excluded.updated,"
            " study=excluded.study",
            (key, status, relpath, category, attempts, time.time(), study),
        )
        self._pending += 1
        if self._pending >= self.COMMIT_EVERY:
            self.commit()
        else:
            self.db.commit()  # no fsync (WAL, synchronous=NORMAL): survives a killed process

    def claim_sop(self, sop: str, digest: str, item: str) -> str:
        """'process' when this item is the first with this SOP Instance UID (or the same item
        again); else 'duplicate' (same content) or 'conflict' (other content): what was
        released stays released."""
        cur = self.db.execute("INSERT OR IGNORE INTO released(sop, digest, item) VALUES (?,?,?)", (sop, digest, item))
        self.db.commit()
        if cur.rowcount == 1:
            return "process"
        row = self.db.execute("SELECT digest, item FROM released WHERE sop=?", (sop,)).fetchone()
        if row is None or row[1] == item:
            return "process"
        return "duplicate" if row[0] == digest else "conflict"

    def unclaim_sop(self, sop: str, item: str) -> None:
        """The claimer was not released (quarantined, failed): a later copy may be."""
        self.db.execute("DELETE FROM released WHERE sop=? AND item=?", (sop, item))
        self.db.commit()

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())

    def commit(self) -> None:
        os.sync()  # the outputs these rows call done reach the disk before the rows do
        self.db.commit()
        self._pending = 0

    def close(self) -> None:
        self.commit()
        self.db.close()

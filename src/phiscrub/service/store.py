"""The service's state: the pipeline's own JobState (one row per item, keyed by a keyed
hash of URI, size, version and policy, as the CLI keys it) plus the service's tables
(jobs, the review queue, a PHI-free activity log for the dashboard).

Why a claim on top of JobState: a bucket event may be delivered twice at once (Pub/Sub
and Eventarc are at-least-once). One SQL statement turns a row to 'running' only if it is
new, pending, failed or a stale claim, so exactly one delivery does the work, across
threads and across server processes that share the file; a claim older than the lease
(a server killed mid-item) may be taken again.

The database holds no source path or object name: items are keyed hashes, jobs keep a
keyed hash of their source.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from phiscrub.pipeline.state import JobState

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, policy TEXT NOT NULL, status TEXT NOT NULL, src_hash TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0, success INTEGER NOT NULL DEFAULT 0, failure INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, ended REAL, error TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS review (
    id TEXT PRIMARY KEY, item_key TEXT NOT NULL, channel TEXT NOT NULL, policy TEXT NOT NULL, dst TEXT NOT NULL,
    kind TEXT NOT NULL, size INTEGER NOT NULL, reason TEXT NOT NULL, category TEXT NOT NULL,
    status TEXT NOT NULL, created REAL NOT NULL, decided REAL, reviewer TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL,
    status TEXT NOT NULL, category TEXT NOT NULL, seconds REAL NOT NULL, bytes INTEGER NOT NULL);
"""
ACTIVITY_KEEP = 20000
CLAIMABLE = ("pending", "failed")  # 'failed' is transient or internal: a redelivery tries again


def _shared_job_state(path: Path) -> JobState:
    """JobState as the CLI uses it, its connection reopened for use from the server's
    threads (every use is under the store's lock)."""
    st = JobState(path)
    st.db.close()
    st.db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    st.db.execute("PRAGMA journal_mode=WAL")
    st.db.execute("PRAGMA synchronous=NORMAL")
    return st


class ServiceStore:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.items = _shared_job_state(state_dir / "state.sqlite")
        self.db = sqlite3.connect(state_dir / "service.sqlite", check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        self.db.commit()

    # -- items (the pipeline's JobState) --------------------------------------------------
    def claim(self, key: str, lease_s: float) -> tuple[str, str]:
        """('claimed', '') when this caller must process the item; ('busy', 'running') while
        another delivery holds it; ('finished', status) when it was done before."""
        now = time.time()
        with self.lock:
            cur = self.items.db.execute(
                "INSERT INTO items(key, status, updated) VALUES (?, 'running', ?) ON CONFLICT(key) DO UPDATE"
                " SET status='running', updated=excluded.updated"
                f" WHERE items.status IN ({','.join('?' * len(CLAIMABLE))})"
                " OR (items.status='running' AND items.updated < ?)",
                (key, now, *CLAIMABLE, now - lease_s))
            self.items.db.commit()
            if cur.rowcount == 1:
                return "claimed", ""
            row = self.items.db.execute("SELECT status FROM items WHERE key=?", (key,)).fetchone()
        status = row[0] if row else "pending"
        return ("busy" if status == "running" else "finished"), status

    def record(self, key: str, status: str, relpath: str, category: str, attempts: int = 1) -> None:
        with self.lock:
            self.items.record(key, status, relpath, category, attempts)

    def done_relpath(self, key: str) -> str | None:
        with self.lock:
            return self.items.done_relpath(key)

    def mark_pending(self, keys: list[str]) -> None:
        with self.lock:
            self.items.mark_pending(keys)

    def item_counts(self) -> dict[str, int]:
        with self.lock:
            return self.items.counts()

    # -- activity (dashboard) ----------------------------------------------------------------
    def activity(self, channel: str, kind: str, status: str, category: str, seconds: float, size: int) -> None:
        with self.lock:
            cur = self.db.execute("INSERT INTO activity(at, channel, kind, status, category, seconds, bytes)"
                                  " VALUES (?,?,?,?,?,?,?)", (time.time(), channel, kind, status, category, seconds, size))
            if cur.lastrowid and cur.lastrowid % 1000 == 0:
                self.db.execute("DELETE FROM activity WHERE id <= ?", (cur.lastrowid - ACTIVITY_KEEP,))
            self.db.commit()

    def activity_counts(self) -> list[tuple[str, str, int]]:
        with self.lock:
            return self.db.execute("SELECT channel, status, COUNT(*) FROM activity GROUP BY channel, status"
                                   " ORDER BY channel, status").fetchall()

    def recent_seconds(self, n: int = 500) -> list[tuple[str, float]]:
        with self.lock:
            return self.db.execute("SELECT kind, seconds FROM activity ORDER BY id DESC LIMIT ?", (n,)).fetchall()

    # -- jobs ---------------------------------------------------------------------------------
    def create_job(self, job_id: str, policy: str, src_hash: str) -> None:
        with self.lock:
            self.db.execute("INSERT INTO jobs(id, policy, status, src_hash, created) VALUES (?,?,?,?,?)",
                            (job_id, policy, "running", src_hash, time.time()))
            self.db.commit()

    def update_job(self, job_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.lock:
            self.db.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))
            self.db.commit()

    def add_to_job(self, job_id: str, success: int = 0, failure: int = 0) -> None:
        with self.lock:
            self.db.execute("UPDATE jobs SET success=success+?, failure=failure+? WHERE id=?", (success, failure, job_id))
            self.db.commit()

    def _rows(self, sql: str, args: tuple = ()) -> list[dict]:
        """A query's rows as column-name dicts."""
        with self.lock:
            cur = self.db.execute(sql, args)
            names = [c[0] for c in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def job(self, job_id: str) -> dict | None:
        return next(iter(self._rows("SELECT * FROM jobs WHERE id=?", (job_id,))), None)

    def jobs(self, limit: int = 50) -> list[dict]:
        return self._rows("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))

    def interrupt_unfinished(self) -> int:
        """Jobs a stopped server left running: marked so (their finished items are skipped
        when the job is submitted again)."""
        with self.lock:
            cur = self.db.execute("UPDATE jobs SET status='interrupted', ended=?, error=? WHERE status='running'",
                                  (time.time(), "the server stopped: submit the job again (finished items are skipped)"))
            self.db.commit()
            return cur.rowcount

    # -- review queue ---------------------------------------------------------------------------
    def enqueue(self, rid: str, **fields: Any) -> None:
        fields = {"status": "pending", "created": time.time(), **fields}
        cols = ", ".join(fields)
        with self.lock:
            self.db.execute(f"INSERT OR REPLACE INTO review(id, {cols}) VALUES (?, {','.join('?' * len(fields))})",
                            (rid, *fields.values()))
            self.db.commit()

    def review_item(self, rid: str) -> dict | None:
        return next(iter(self._rows("SELECT * FROM review WHERE id=?", (rid,))), None)

    def review_items(self, status: str | None = "pending", limit: int = 200) -> list[dict]:
        if status:
            return self._rows("SELECT * FROM review WHERE status=? ORDER BY created DESC LIMIT ?", (status, limit))
        return self._rows("SELECT * FROM review ORDER BY created DESC LIMIT ?", (limit,))

    def decide(self, rid: str, status: str, reviewer: str, output: str = "", expect: str = "pending") -> bool:
        """Moves an item on from ``expect`` only (two reviewers clicking at once: one wins)."""
        with self.lock:
            cur = self.db.execute("UPDATE review SET status=?, decided=?, reviewer=?, output=? WHERE id=? AND status=?",
                                  (status, time.time(), reviewer, output, rid, expect))
            self.db.commit()
            return cur.rowcount == 1

    def pending_reviews(self) -> int:
        with self.lock:
            return self.db.execute("SELECT COUNT(*) FROM review WHERE status='pending'").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            self.items.close()
            self.db.close()

"""In-place rewrite made crash-safe with a journal.

Why: changing a slide where it lies saves copying gigabytes of tiles, but a crash half-way
through would leave a file that is neither the original nor the scrubbed one. Before any
byte changes, the journal records, for every region about to be written, its original
bytes and its new bytes, plus the original file length; it is fsynced and renamed into
place. Only then are the patches applied. A complete journal found later means the
rewrite may be half-done: :func:`recover` rolls it back (originals, truncate) or forward
(new bytes). An incomplete journal means nothing was applied yet, so it is dropped.

The journal holds original bytes (PHI): it lives beside the source, never under the
output folder, and is removed as soon as the rewrite is durable.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path

from phiscrub.errors import CorruptFile
from phiscrub.pipeline.sinks import fsync_dir
from phiscrub.wsi.tiff import pwrite_all

MAGIC = b"PHISCRUB-JOURNAL1"
SUFFIX = ".phiscrub-journal"


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


def apply_in_place(path: Path, patches: list[tuple[int, bytes]], *, crash_after: int | None = None) -> None:
    """Journal, apply, fsync, drop the journal. ``crash_after`` (tests only) stops after that
    many patches, as a crash would."""
    path = Path(path)
    jpath = journal_path(path)
    if jpath.exists():
        raise CorruptFile("an interrupted in-place rewrite is pending: recover it first")
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        h = hashlib.sha256()
        parts = [MAGIC, struct.pack("<QQ", size, len(patches))]
        for off, data in patches:
            keep = max(0, min(len(data), size - off))
            orig = os.pread(fd, keep, off) if keep else b""
            parts.append(struct.pack("<QQQ", off, len(data), len(orig)) + data + orig)
        for p in parts:
            h.update(p)
        parts.append(h.digest())
        tmp = jpath.with_name(jpath.name + ".tmp")
        jfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for p in parts:
                pwrite_all(jfd, p, os.lseek(jfd, 0, os.SEEK_END))
            os.fsync(jfd)
        finally:
            os.close(jfd)
        os.replace(tmp, jpath)
        fsync_dir(jpath.parent)
        for i, (off, data) in enumerate(patches):
            if crash_after is not None and i >= crash_after:
                return
            pwrite_all(fd, data, off)
        os.fsync(fd)
    finally:
        os.close(fd)
    jpath.unlink()
    fsync_dir(jpath.parent)


def _read(jpath: Path) -> tuple[int, list[tuple[int, bytes, bytes]]] | None:
    blob = jpath.read_bytes()
    if len(blob) < len(MAGIC) + 16 + 32 or not blob.startswith(MAGIC):
        return None
    if hashlib.sha256(blob[:-32]).digest() != blob[-32:]:
        return None  # written only in part: nothing was applied
    pos = len(MAGIC)
    size, n = struct.unpack_from("<QQ", blob, pos)
    pos += 16
    recs = []
    for _ in range(n):
        off, ln, lo = struct.unpack_from("<QQQ", blob, pos)
        pos += 24
        recs.append((off, blob[pos:pos + ln], blob[pos + ln:pos + ln + lo]))
        pos += ln + lo
    return size, recs


def recover(path: Path, direction: str = "back") -> str:
    """Finish an interrupted in-place rewrite of ``path``: ``back`` restores the original
    bytes, ``forward`` completes the rewrite. Returns what was done: 'none' (no journal),
    'dropped' (incomplete journal, nothing had been applied), 'rolled-back', 'rolled-forward'."""
    path = Path(path)
    jpath = journal_path(path)
    tmp = jpath.with_name(jpath.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    if not jpath.exists():
        return "none"
    got = _read(jpath)
    if got is None:
        jpath.unlink()
        return "dropped"
    size, recs = got
    fd = os.open(path, os.O_RDWR)
    try:
        if direction == "back":
            for off, _new, orig in reversed(recs):
                if orig:
                    pwrite_all(fd, orig, off)
            os.ftruncate(fd, size)
            done = "rolled-back"
        elif direction == "forward":
            for off, new, _orig in recs:
                pwrite_all(fd, new, off)
            done = "rolled-forward"
        else:
            raise ValueError("direction must be 'back' or 'forward'")
        os.fsync(fd)
    finally:
        os.close(fd)
    jpath.unlink()
    fsync_dir(jpath.parent)
    return done

"""Where outputs go. Writes are atomic (temporary name beside the target, then rename), so
a half-written file never appears under its final name.

Durability is batched: flushing the disk for every file would cost more than the
de-identification itself, so workers call ``os.sync()`` every ``SYNC_EVERY`` files and the
runner once more before it records the run as ended. ``durable=True`` fsyncs each file.
"""

from __future__ import annotations

import os
from pathlib import Path

SYNC_EVERY = 256
_made_dirs: set[Path] = set()
_since_sync = 0


def ensure_dir(path: Path) -> None:
    if path not in _made_dirs:
        path.mkdir(parents=True, exist_ok=True)
        _made_dirs.add(path)


def write_temp(target: Path, data: bytes, durable: bool = False) -> Path:
    """Writes beside the target under a hidden temporary name; the caller renames it."""
    ensure_dir(target.parent)
    tmp = target.with_name(f".partial-{os.getpid()}-{target.name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:  # the folder went away under a long-lived process: recreate
        _made_dirs.clear()
        ensure_dir(target.parent)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def publish(tmp: Path, target: Path) -> None:
    global _since_sync
    os.replace(tmp, target)
    _since_sync += 1
    if _since_sync >= SYNC_EVERY:
        flush()


def flush() -> None:
    global _since_sync
    os.sync()
    _since_sync = 0


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in the folder durable (its entry, not just its data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    tmp = write_temp(path, data, durable)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def state_dir(dst: Path) -> Path:
    """Run state, audit and reports live beside the outputs in a dot-folder that archive
    walkers skip."""
    d = dst / ".phiscrub"
    d.mkdir(parents=True, exist_ok=True)
    return d

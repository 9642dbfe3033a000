"""Where outputs go. Writes are atomic (temporary name beside the target, fsync, rename),
so a half-written file never appears under the output folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def state_dir(dst: Path) -> Path:
    """Run state, audit and reports live beside the outputs, never inside the tree of
    released instances' folders (it starts with a dot so archive walkers skip it)."""
    d = dst / ".phiscrub"
    d.mkdir(parents=True, exist_ok=True)
    return d

"""Finds the items to process under a source: a file, or a folder walked in sorted order
(sorted so runs, logs and outputs are reproducible)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path


def discover(src: Path) -> Iterator[Path]:
    if src.is_file():
        yield src
        return
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".phiscrub"))
        for name in sorted(files):
            if not name.endswith(".phiscrub-journal"):  # an interrupted in-place slide rewrite
                yield Path(root) / name

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
        # a 3DHISTECH slide is NAME.mrxs beside a folder NAME/ holding Slidedat.ini and its
        # data: the folder is part of the slide (handled with it), not items of its own
        stems = {os.path.splitext(f)[0] for f in files}
        dirs[:] = sorted(d for d in dirs if not d.startswith(".phiscrub")
                         and not (d in stems and os.path.isfile(os.path.join(root, d, "Slidedat.ini"))))
        for name in sorted(files):
            if not name.endswith(".phiscrub-journal"):  # an interrupted in-place slide rewrite
                yield Path(root) / name

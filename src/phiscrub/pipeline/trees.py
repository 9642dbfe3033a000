"""A job's folder as a tree of relative paths: a local folder or a gs:// / s3:// prefix.

Why: ``verify`` and ``report`` re-read what a job wrote from wherever it wrote it (from the
bucket itself, never from a local copy the job may have left behind), and one code path
serves both kinds: list every path under the root, read one, open one for a partial read
(a DICOM header), or get local files for readers that need a path (slide formats,
OpenSlide). A bucket's objects are then streamed to a temporary folder (``get_file``,
never read whole: slides are gigabytes) that is removed when the reader is done.

Paths are relative and '/'-separated on both kinds, as the audit log records outputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

from phiscrub.pipeline.storage import scheme_of

BUCKET_SCHEMES = ("gs", "gcs", "s3")


class Tree(Protocol):
    def walk(self) -> Iterator[tuple[str, bool]]:
        """Every entry under the root as (relative path, is a folder), in a stable order.
        Buckets have no folders: only their objects are listed."""
        ...

    def read(self, rel: str) -> bytes: ...

    def open(self, rel: str) -> BinaryIO:
        """For readers that stop early (a DICOM header without its pixels)."""
        ...

    def local_files(self, rels: list[str], *, neutral: bool = False):
        """A context manager giving local paths for ``rels``; ``neutral`` names fetched
        copies by position and suffix only (a source name may hold PHI)."""
        ...


def is_bucket(uri: str | Path) -> bool:
    return scheme_of(str(uri)) in BUCKET_SCHEMES


def open_tree(uri: str | Path) -> Tree:
    """A local folder (a path or a file:// URI) or a bucket prefix; other schemes (a
    DICOMweb store) have no tree of files to re-read and are refused with ValueError."""
    s = str(uri)
    scheme = scheme_of(s)
    if scheme == "file":
        return LocalTree(Path(s[len("file://"):] if s.startswith("file://") else s))
    if scheme in BUCKET_SCHEMES:
        return BucketTree(s)
    raise ValueError(f"{scheme}:// is not a folder or a bucket")


class LocalTree:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).absolute()

    def walk(self) -> Iterator[tuple[str, bool]]:
        for top, dirs, files in os.walk(self.root):
            dirs.sort()
            rel_top = Path(top).relative_to(self.root)
            for name in sorted(files):
                yield (rel_top / name).as_posix(), False
            for name in dirs:
                yield (rel_top / name).as_posix(), True

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    def open(self, rel: str) -> BinaryIO:
        return open(self.root / rel, "rb")

    @contextmanager
    def local_files(self, rels: list[str], *, neutral: bool = False) -> Iterator[list[Path]]:
        yield [self.root / r for r in rels]  # already local: no copy


class BucketTree:
    def __init__(self, uri: str, endpoint_url: str | None = None) -> None:
        from phiscrub.pipeline.objectstore import filesystem

        self.scheme = scheme_of(uri)
        self.root = uri.partition("://")[2].strip("/")
        self.fs = filesystem(self.scheme, endpoint_url)

    def _key(self, rel: str) -> str:
        if ".." in PurePosixPath(rel).parts:
            raise ValueError("a relative path leaves its tree")
        return f"{self.root}/{rel}"

    def walk(self) -> Iterator[tuple[str, bool]]:
        try:
            keys = self.fs.find(self.root)
        except FileNotFoundError:  # no bucket or no prefix: an empty tree
            return
        n = len(self.root) + 1
        for key in sorted(keys):
            if key.startswith(self.root + "/") and not key.endswith("/"):  # ('dir/' placeholders are no objects we wrote)
                yield key[n:], False

    def read(self, rel: str) -> bytes:
        return self.fs.cat_file(self._key(rel))

    def open(self, rel: str) -> BinaryIO:
        from phiscrub.pipeline.objectstore import open_header

        return open_header(self.fs, self._key(rel))

    @contextmanager
    def local_files(self, rels: list[str], *, neutral: bool = False) -> Iterator[list[Path]]:
        tmp = Path(tempfile.mkdtemp(prefix="phiscrub-fetch-"))
        try:
            paths = []
            for i, rel in enumerate(rels):
                target = tmp / (f"item{i}{_suffix(rel)}" if neutral else rel)
                target.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(self._key(rel), str(target))  # streamed to disk
                paths.append(target)
            yield paths
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _suffix(rel: str) -> str:
    """The extension alone (some readers, OpenSlide's for NDPI, go by it)."""
    s = PurePosixPath(rel).suffix.lower()
    return s if 1 < len(s) <= 12 and s[1:].isalnum() else ""

"""gs:// and s3:// through fsspec (gcsfs, s3fs): buckets as sources and sinks.

Endpoints come from the standard variables, so the same code runs against the clouds and
against emulators: ``STORAGE_EMULATOR_HOST`` for GCS (then anonymous credentials),
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3; or the ``endpoint_url`` option.
An item's version is the object's generation (GCS) or ETag (S3): a rewritten object is a
new item for the job state. An object PUT is atomic (readers see the old object or the new
one, never a part), so a sink writes each output in one PUT, after it was verified, and
then confirms that the store holds exactly those bytes (objectcheck.py).

Every instance is made fresh (``skip_instance_cache``): workers are forked from the CLI,
and an fsspec instance bound to the parent's event loop must not cross a fork.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from phiscrub.extras import require
from phiscrub.pipeline.objectcheck import confirm_stored, file_digests
from phiscrub.pipeline.storage import Item, register_scheme, scheme_of

_PARTIAL = ".partial-"


S3_PART = 64 << 20  # bytes per part of a multipart upload (s3fs uploads in parts from twice this)
S3_MAX_PARTS = 10_000  # S3's limit: larger files get larger parts


def open_header(fs: Any, key: str):
    """An object opened for a DICOM header read: blocks are kept once fetched, since the
    reader seeks back within the header and a read-ahead cache fetches again each time."""
    return fs.open(key, "rb", block_size=1 << 16, cache_type="blockcache")


def filesystem(scheme: str, endpoint_url: str | None = None) -> Any:
    # gcsfs and s3fs are the [cloud] extra: imported here, not at module top, so that a
    # core install can load this module and say which extra a bucket URI needs
    if scheme in ("gs", "gcs"):
        require("cloud", "fsspec", "gcsfs", what=f"{scheme}://")
        emulator = endpoint_url or os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            # the plain class: gcsfs's default one first asks a gRPC control API about the
            # bucket type, which an emulator does not serve (a 60 s timeout per bucket)
            from gcsfs.core import GCSFileSystem

            if not emulator.startswith("http"):
                emulator = "http://" + emulator
            return GCSFileSystem(endpoint_url=emulator, token="anon", project="phiscrub",
                                 skip_instance_cache=True)
        import gcsfs

        return gcsfs.GCSFileSystem(skip_instance_cache=True)
    if scheme == "s3":
        require("cloud", "fsspec", "s3fs", what="s3://")
        import s3fs

        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kw: dict[str, Any] = {"skip_instance_cache": True}
        if endpoint:
            kw["endpoint_url"] = endpoint
        return s3fs.S3FileSystem(**kw)
    raise ValueError(f"no object store for {scheme}://")


def _split(uri: str) -> tuple[str, str]:
    """(scheme, 'bucket/prefix' without a trailing slash)."""
    scheme = scheme_of(uri)
    return scheme, uri.partition("://")[2].strip("/")


def _version(info: dict) -> str:
    for k in ("generation", "VersionId", "ETag", "etag"):
        v = info.get(k)
        if v:
            return str(v).strip('"')
    return str(info.get("mtime") or info.get("LastModified") or "")


class ObjectSource:
    def __init__(self, uri: str, endpoint_url: str | None = None, **_: object) -> None:
        self.scheme, self.root = _split(uri)
        self.fs = filesystem(self.scheme, endpoint_url)

    def _uri(self, key: str) -> str:
        return f"{self.scheme}://{key}"

    def items(self) -> Iterator[Item]:
        if self.fs.isfile(self.root):
            info = self.fs.info(self.root)
            yield Item(self._uri(self.root), int(info.get("size") or 0), _version(info))
            return
        found = self.fs.find(self.root, detail=True)
        for key in sorted(found):
            info = found[key]
            parts = key[len(self.root):].split("/")
            if info.get("type") == "directory" or any(p.startswith((".phiscrub", _PARTIAL)) for p in parts):
                continue
            yield Item(self._uri(key), int(info.get("size") or 0), _version(info))

    def _key(self, item: Item) -> str:
        return item.uri.partition("://")[2]

    def read(self, item: Item) -> bytes:
        return self.fs.cat_file(self._key(item))

    def head(self, item: Item, n: int) -> bytes:
        return self.fs.cat_file(self._key(item), start=0, end=n)

    def open(self, item: Item):
        """For a header read (study selection)."""
        return open_header(self.fs, self._key(item))

    def fetch(self, item: Item, local: Path) -> None:
        """Streams the object to a local file (a slide is gigabytes: never read whole)."""
        self.fs.get_file(self._key(item), str(local))

    def local_path(self, item: Item) -> str | None:
        return None


class ObjectSink:
    def __init__(self, uri: str, endpoint_url: str | None = None, **_: object) -> None:
        self.scheme, self.root = _split(uri)
        self.fs = filesystem(self.scheme, endpoint_url)
        self._listing: set[str] | None = None

    local_dir = None

    def _key(self, relpath: str) -> str:
        return f"{self.root}/{relpath}"

    def write(self, relpath: str, data: bytes) -> str:
        """One PUT, then confirmed: the stored object is ``data`` or it is deleted and
        TransientError raised."""
        key = self._key(relpath)
        self.fs.pipe_file(key, data)
        confirm_stored(self.fs, key, hashlib.md5(data, usedforsecurity=False).hexdigest(), len(data))
        if self._listing is not None:
            self._listing.add(relpath)
        return f"{self.scheme}://{key}"

    def write_checked(self, relpath: str, data: bytes, check: Callable[[bytes], None] | None) -> str:
        """Checked before the PUT: an object store has no hidden name to rename from, and
        a PUT is all-or-nothing; ``write`` then confirms the store holds the checked bytes."""
        if check is not None:
            check(data)
        return self.write(relpath, data)

    def put_file(self, relpath: str, local: Path) -> str:
        """A verified local file (a slide), uploaded and confirmed against its MD5 (hashed
        in chunks: slides do not fit in memory). To S3, in parts of a size chosen here, so
        that the multipart ETag can be computed from the file (objectcheck)."""
        key = self._key(relpath)
        size = local.stat().st_size
        if self.scheme == "s3":
            part = max(S3_PART, -(-size // S3_MAX_PARTS))
            md5, multipart = file_digests(local, part)
            self.fs.put_file(str(local), key, chunksize=part)
            confirm_stored(self.fs, key, md5, size, multipart)
        else:
            md5, _ = file_digests(local)
            self.fs.put_file(str(local), key)
            confirm_stored(self.fs, key, md5, size)
        if self._listing is not None:
            self._listing.add(relpath)
        return f"{self.scheme}://{key}"

    def exists(self, relpath: str) -> bool:
        if self._listing is None:  # one listing instead of a request per item on resume
            try:
                keys = self.fs.find(self.root)
            except FileNotFoundError:
                keys = []
            n = len(self.root) + 1
            self._listing = {k[n:] for k in keys}
        return relpath in self._listing


register_scheme("gs", source=ObjectSource, sink=ObjectSink)
register_scheme("gcs", source=ObjectSource, sink=ObjectSink)
register_scheme("s3", source=ObjectSource, sink=ObjectSink)

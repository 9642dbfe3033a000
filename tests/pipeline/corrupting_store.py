"""Failure injection at the storage boundary, for the upload-confirmation tests: a real
bucket (the emulator) behind a client whose uploads store other bytes than the ones handed
to it, as a body damaged on the way would. Nothing about the emulator is mocked.

Also a test-only scheme, loaded through PHISCRUB_PLUGINS: ``gsbad://BUCKET/PREFIX`` is a
gs:// sink whose every upload arrives damaged.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from phiscrub.pipeline.objectstore import ObjectSink
from phiscrub.pipeline.storage import register_scheme

CHECKSUM_KEYS = ("md5Hash", "crc32c", "ETag", "etag")


class InjectingFS:
    """Wraps an fsspec filesystem. ``corrupt``: every PUT (pipe_file, put_file) stores the
    body with its last byte flipped. ``hide_checksums``: info() reports no checksum, as
    for an S3 multipart upload or a GCS composite object (the sink must read back)."""

    def __init__(self, fs: Any, *, corrupt: bool = True, hide_checksums: bool = False) -> None:
        self._fs = fs
        self.corrupt = corrupt
        self.hide_checksums = hide_checksums

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def _damage(self, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 0x01]) if self.corrupt and data else data

    def pipe_file(self, path: str, data: bytes, **kw: Any) -> Any:
        return self._fs.pipe_file(path, self._damage(bytes(data)), **kw)

    def put_file(self, lpath: str, rpath: str, **kw: Any) -> Any:
        """A damaged copy goes up the way the file would (in the same parts, for S3)."""
        if not self.corrupt:
            return self._fs.put_file(lpath, rpath, **kw)
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "damaged"
            bad.write_bytes(self._damage(Path(lpath).read_bytes()))
            return self._fs.put_file(str(bad), rpath, **kw)

    def info(self, path: str, **kw: Any) -> dict:
        info = dict(self._fs.info(path, **kw))
        if self.hide_checksums:
            for k in CHECKSUM_KEYS:
                info.pop(k, None)
        return info


class DamagingSink(ObjectSink):
    def __init__(self, uri: str, **kw: Any) -> None:
        super().__init__("gs://" + uri.partition("://")[2], **kw)
        self.fs = InjectingFS(self.fs)


register_scheme("gsbad", sink=DamagingSink)

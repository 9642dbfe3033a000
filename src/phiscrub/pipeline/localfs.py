"""The 'file' scheme: a local folder or a single file as a source, a folder as a sink.

Items are found by discover.discover (sorted walk, an MRXS data folder left to its slide);
an item's URI is its absolute path and its version the mtime in nanoseconds, so the job
state key is what it was before storage backends existed. Writes go through sinks.py
(hidden temporary name beside the target, then rename), so no reader ever sees half a file
and a killed run leaves only hidden ``.partial-*`` names, which the next run sweeps.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from phiscrub.pipeline.discover import discover
from phiscrub.pipeline.sinks import ensure_dir, publish, write_temp
from phiscrub.pipeline.storage import Item, register_scheme

PARTIAL_PREFIX = ".partial-"


def _path(uri: str) -> Path:
    return Path(uri[len("file://"):] if uri.startswith("file://") else uri)


class LocalSource:
    def __init__(self, uri: str, **_: object) -> None:
        self.root = _path(uri).absolute()

    def items(self) -> Iterator[Item]:
        for p in discover(self.root):
            try:
                st = p.stat()
            except OSError:  # vanished or unreadable: the worker reports it
                yield Item(str(p), 0, "")
                continue
            yield Item(str(p), st.st_size, str(st.st_mtime_ns))

    def read(self, item: Item) -> bytes:
        return Path(item.uri).read_bytes()

    def open(self, item: Item):
        return open(item.uri, "rb")

    def local_path(self, item: Item) -> str | None:
        return item.uri


class LocalSink:
    def __init__(self, uri: str, durable: bool = False, **_: object) -> None:
        self.root = _path(uri).absolute()
        self.durable = durable

    @property
    def local_dir(self) -> Path:
        return self.root

    def write(self, relpath: str, data: bytes) -> str:
        return self.write_checked(relpath, data, None)

    def write_checked(self, relpath: str, data: bytes, check: Callable[[bytes], None] | None) -> str:
        """``check`` sees the bytes as the file system holds them, before they are visible
        under the final name; if it raises, nothing is published."""
        target = self.root / relpath
        tmp = write_temp(target, data, self.durable)
        try:
            if check is not None:
                check(tmp.read_bytes())
            publish(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return str(target)

    def put_file(self, relpath: str, local: Path) -> str:
        """Moves (or, across file systems, copies) a finished local file into place."""
        target = self.root / relpath
        ensure_dir(target.parent)
        tmp = target.with_name(f"{PARTIAL_PREFIX}{os.getpid()}-{target.name}")
        try:
            os.replace(local, tmp)
        except OSError:
            shutil.copyfile(local, tmp)
        os.replace(tmp, target)
        return str(target)

    def exists(self, relpath: str) -> bool:
        return (self.root / relpath).is_file()

    def sweep_partials(self) -> int:
        """Removes temporary files a killed run left behind (hidden names, never outputs)."""
        n = 0
        if not self.root.is_dir():
            return 0
        for root, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".phiscrub")]
            for f in files:
                if f.startswith(PARTIAL_PREFIX):
                    try:
                        os.unlink(os.path.join(root, f))
                        n += 1
                    except OSError:
                        pass
        return n


register_scheme("file", source=LocalSource, sink=LocalSink)

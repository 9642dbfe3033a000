"""Test-only storage schemes, loaded by every worker through PHISCRUB_PLUGINS (the job
carries the list), so they work in a local pool and on Dask workers alike.

- ``flaky://DIR``: a local folder whose reads fail with a transient ConnectionResetError
  the first FLAKY_FAILS times per file (counted in marker files beside DIR, across
  processes), and with PermissionError for files whose name starts with 'denied'.
- ``crashtest://DIR``: a local folder whose read of a file holding the bytes CRASH_MARKER
  kills the reading process with SIGSEGV, as a native codec's segfault would.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from phiscrub.pipeline.localfs import LocalSource
from phiscrub.pipeline.storage import Item, register_scheme

FLAKY_FAILS = 2
CRASH_MARKER = b"PHISCRUB-TEST-SEGFAULT"


class FlakySource(LocalSource):
    def __init__(self, uri: str, **kw: object) -> None:
        super().__init__(uri.partition("://")[2], **kw)
        self.marks = self.root.parent / (self.root.name + ".flaky")
        self.marks.mkdir(exist_ok=True)

    def items(self):
        for it in super().items():
            yield Item("flaky://" + it.uri, it.size, it.version)

    def local_path(self, item: Item) -> str | None:
        return None  # read through the source, as a bucket would be

    def _file(self, item: Item) -> Path:
        return Path(item.uri.partition("://")[2])

    def read(self, item: Item) -> bytes:
        p = self._file(item)
        if p.name.startswith("denied"):
            raise PermissionError(13, "Permission denied")
        mark = self.marks / (p.name + ".n")
        n = int(mark.read_text()) if mark.exists() else 0
        if n < FLAKY_FAILS:
            mark.write_text(str(n + 1))
            raise ConnectionResetError(104, "Connection reset by peer")
        return p.read_bytes()

    def head(self, item: Item, n: int) -> bytes:
        return self.read(item)[:n]


class CrashSource(LocalSource):
    def __init__(self, uri: str, **kw: object) -> None:
        super().__init__(uri.partition("://")[2], **kw)

    def items(self):
        for it in super().items():
            yield Item("crashtest://" + it.uri, it.size, it.version)

    def local_path(self, item: Item) -> str | None:
        return None

    def read(self, item: Item) -> bytes:
        data = Path(item.uri.partition("://")[2]).read_bytes()
        if CRASH_MARKER in data:
            import faulthandler

            faulthandler.disable()  # no fault report on the test's stderr: the crash is the point
            os.kill(os.getpid(), signal.SIGSEGV)
        return data

    def head(self, item: Item, n: int) -> bytes:
        return self.read(item)[:n]


register_scheme("flaky", source=FlakySource)
register_scheme("crashtest", source=CrashSource)

"""Where items come from and where outputs go, behind one interface, chosen by URI scheme.

Why: the same runner serves a laptop folder, a bucket (gs://, s3:// through fsspec), a
DICOMweb store and a cluster; workers get item URIs and read and write storage themselves,
so file bytes never pass through the scheduler. Each scheme registers a source and a sink
factory here (after pydicom's decoder registry: one registry, one module per backend).

Item identity for job state is (uri, size, version): version is the mtime for local files,
the generation or ETag for objects, the instance UID for DICOMweb; with the policy hash it
makes the resume key, so a changed object is redone and an unchanged one skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Item:
    """One thing to process. ``uri`` is only ever shown on the console (it can hold a
    patient's name); state and audit store keyed hashes of it."""

    uri: str
    size: int
    version: str
    study: str = ""  # StudyInstanceUID when the source knows it (DICOMweb, or after a sniff)


class Source(Protocol):
    def items(self) -> Iterator[Item]:
        """Every item under the source, in a stable (sorted) order."""
        ...

    def read(self, item: Item) -> bytes: ...

    def local_path(self, item: Item) -> str | None:
        """A local file holding the item, when there is one (slides are streamed from
        files, never read whole); None for remote items."""
        ...


class Sink(Protocol):
    def write(self, relpath: str, data: bytes) -> str:
        """Store ``data`` under ``relpath`` so that no reader ever sees it half-written
        (temporary name + rename locally; a single PUT for objects); returns its URI."""
        ...

    def exists(self, relpath: str) -> bool: ...


SourceFactory = Callable[..., Source]
SinkFactory = Callable[..., Sink]
_SOURCES: dict[str, SourceFactory] = {}
_SINKS: dict[str, SinkFactory] = {}
# backends that register themselves when imported, loaded on first use of their scheme (in
# the CLI and in every worker process alike, which get URIs, not source objects)
_MODULES: dict[str, str] = {
    "file": "phiscrub.pipeline.localfs",
    "gs": "phiscrub.pipeline.objectstore",
    "gcs": "phiscrub.pipeline.objectstore",
    "s3": "phiscrub.pipeline.objectstore",
    "dicomweb+http": "phiscrub.pipeline.dicomweb",
    "dicomweb+https": "phiscrub.pipeline.dicomweb",
}


def register_scheme(scheme: str, source: SourceFactory | None = None, sink: SinkFactory | None = None) -> None:
    if source is not None:
        _SOURCES[scheme] = source
    if sink is not None:
        _SINKS[scheme] = sink


def scheme_of(uri: str) -> str:
    """'gs', 's3', 'dicomweb+https', ...; 'file' for a plain path (a Windows drive letter
    is a path, not a scheme)."""
    head, sep, _ = uri.partition("://")
    if sep and len(head) > 1 and head.replace("+", "").isalnum():
        return head.lower()
    return "file"


def _load(scheme: str) -> None:
    if scheme in _MODULES and scheme not in _SOURCES and scheme not in _SINKS:
        import importlib

        importlib.import_module(_MODULES[scheme])


def load_plugins(modules: tuple[str, ...] | list[str]) -> None:
    """Imports modules that register schemes of their own (named in PHISCRUB_PLUGINS and
    carried by the job, so that every worker, local or remote, imports them too)."""
    import importlib

    for m in modules:
        importlib.import_module(m)


def open_source(uri: str, **options: object) -> Source:
    return _factory(_SOURCES, uri, "source")(uri, **options)


def open_sink(uri: str, **options: object) -> Sink:
    return _factory(_SINKS, uri, "destination")(uri, **options)


def _factory(table: dict, uri: str, what: str):
    scheme = scheme_of(uri)
    _load(scheme)
    factory = table.get(scheme)
    if factory is None:
        raise ValueError(f"no {what} for {scheme}:// (known: {sorted(table)})")
    return factory

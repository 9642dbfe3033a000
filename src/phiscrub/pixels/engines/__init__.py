"""One interface for text engines, and a registry that picks one by name.

Modelled on pydicom's pixel-data decoder registry: the pixel stage asks for an engine by
the name in the config (``pixels.engine``) and never imports an engine module itself, so
adding another engine (tesseract, a GPU build, a cloud one behind a flag) is one module
that calls :func:`register_engine` - nothing else changes.

Engines are expensive to create (model files are read and ONNX sessions built), so
:func:`get_engine` builds each one once per process and hands out the same object after.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from phiscrub.pixels.boxes import TextBox

# A rectangle in image pixels without text: (x, y, w, h).
Rect = tuple[int, int, int, int]


@runtime_checkable
class TextEngine(Protocol):
    """What every engine must do: find text lines in one 8-bit image and read them.

    ``image`` is uint8, H x W (gray) or H x W x 3 (RGB). Boxes come back in that image's
    pixel coordinates, axis-aligned, one per text line (or word, if that is what the
    engine finds), each with the text read and a confidence in 0..1.
    """

    name: str

    def detect(self, image: np.ndarray) -> list[TextBox]: ...


@runtime_checkable
class TwoStageEngine(TextEngine, Protocol):
    """An engine that can find text without reading it, and read given rectangles.

    Optional. Detection on several views of the same pixels (projections, tiles, contrast
    variants) finds the same line many times; an engine with separate stages lets
    :func:`phiscrub.pixels.views.detect_text` merge the rectangles first and read each one
    once, which is where most of the time goes.
    """

    def locate(self, image: np.ndarray) -> list[Rect]: ...

    def read(self, image: np.ndarray, rects: list[Rect]) -> list[tuple[str, float]]: ...


EngineFactory = Callable[[], TextEngine]

_FACTORIES: dict[str, EngineFactory] = {}
_INSTANCES: dict[str, TextEngine] = {}
_LOCK = threading.Lock()
_INHERITED: list[dict[str, TextEngine]] = []


def _after_fork_in_child() -> None:
    """A forked child (a pool worker) inherits the parent's engines but not the threads of
    their runtime: used, or even destroyed, an inherited ONNX session waits for those threads
    for ever (seen as a hung pool when a process that had run OCR, such as a test session,
    started workers). The child keeps them unreachable, never destroyed (workers leave with
    os._exit), and builds its own on first use."""
    global _LOCK
    _LOCK = threading.Lock()  # the parent's lock state means nothing here
    if _INSTANCES:
        _INHERITED.append(dict(_INSTANCES))
        _INSTANCES.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
# Engines shipped with phiscrub: name -> module that registers it on import. Imported only
# when asked for, so choosing one engine never loads another's heavy dependencies.
_BUILTIN = {"rapidocr": "phiscrub.pixels.engines.rapid"}


class EngineUnavailable(RuntimeError):
    """The named engine is unknown or its dependencies are not installed."""


def register_engine(name: str, factory: EngineFactory) -> None:
    """Make an engine available under ``name``; re-registering replaces it (and drops any
    instance already built, so tests and plugins can swap an engine in)."""
    key = name.strip().lower()
    with _LOCK:
        _FACTORIES[key] = factory
        _INSTANCES.pop(key, None)


def available_engines() -> list[str]:
    """Names that :func:`get_engine` accepts (built-in ones even before first import)."""
    return sorted(set(_FACTORIES) | set(_BUILTIN))


def get_engine(name: str = "rapidocr") -> TextEngine:
    """The engine registered as ``name``, created on first use and cached for the process."""
    key = name.strip().lower()
    with _LOCK:
        inst = _INSTANCES.get(key)
        if inst is not None:
            return inst
    if key not in _FACTORIES and key in _BUILTIN:
        import importlib

        try:
            importlib.import_module(_BUILTIN[key])
        except ImportError as exc:
            raise EngineUnavailable(f"text engine {name!r} needs a package that is not installed: {exc}") from exc
    with _LOCK:
        factory = _FACTORIES.get(key)
        if factory is None:
            raise EngineUnavailable(f"unknown text engine {name!r}; available: {available_engines()}")
        inst = _INSTANCES.get(key)
        if inst is None:
            inst = factory()
            _INSTANCES[key] = inst
        return inst


def clear_engine_cache() -> None:
    """Forget built engines (their memory is freed once nothing else holds them)."""
    with _LOCK:
        _INSTANCES.clear()

"""Everything that reads or changes DICOM pixels, in one room with one way in.

Why one package: the pixel stage used to be split between ``dicom/`` (codecs, ink, rules,
the stage itself) and ``ocr/`` (views, engines, matching), and each reached into the other.
Here each module has one job, and the header code (``dicom/``) never needs to know how:

- ``codec``: decode every frame, re-encode losslessly in the source's syntax, blank boxes;
- ``views``: the 8-bit images the text detector sees (windowing, tiling, inverted and
  enlarged views) and the merging of what it finds into lines;
- ``engines``: text engines behind a registry (``get_engine(name)``), modelled on pydicom's
  decoder registry; ``engines.rapid`` is the RapidOCR one shipped in the wheel;
- ``phi_match`` and ``truncated``: which text read from the pixels identifies;
- ``ink`` and ``boxes``: boxes fitted to the ink they cover;
- ``rules``: static regions known to hold text on given devices (data, not code);
- ``redact``: the stage itself, which puts the above together and re-checks its output.

The entry points are :func:`clean_pixels` and :func:`clean_overlays`. They are loaded on first
use (PEP 562), so importing a light module such as ``pixels.boxes`` from header code does not
load numpy, the codecs or the OCR models.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phiscrub.pixels.redact import PixelOutcome, clean_overlays, clean_pixels, effective_mode

__all__ = ["PixelOutcome", "clean_overlays", "clean_pixels", "effective_mode"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module("phiscrub.pixels.redact"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

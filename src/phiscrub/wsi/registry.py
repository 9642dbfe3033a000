"""The one way in to slide formats: sniff a file by content, then scrub and verify it
with the module that owns its format.

Why a registry: formats overlap (an Aperio SVS, a Ventana BIF and an OME-TIFF are all
TIFF), so the order of the checks is the logic; keeping it in one list makes that order
visible and lets a vendor module be added without touching the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phiscrub.keys import KeyRing
    from phiscrub.policy.config import Config


@dataclass(frozen=True)
class SlideJob:
    """What a scrub needs besides the file: keys for pseudonyms and date offsets, the
    config (its `wsi` section says what happens to label and macro), and whether the
    source is changed in place (journalled) instead of copied."""

    keys: KeyRing
    config: Config
    in_place: bool = False


@dataclass
class SlideManifest:
    """What was done to one slide: never a value, only field names, actions and counts."""

    format: str
    fields: dict[str, str] = field(default_factory=dict)  # field name -> action
    associated: dict[str, str] = field(default_factory=dict)  # 'label'/'macro'/... -> action
    levels: int = 0
    tiles: int = 0
    tile_redactions: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # paths relative to the destination
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SlideFormat:
    """One vendor format. ``sniff`` looks at content only (never the extension alone);
    ``scrub`` writes the de-identified slide to ``dst`` (a file, or for multi-file formats
    the main file, with companions beside it); ``verify`` re-reads an output and returns
    the problems found (empty: verified)."""

    name: str
    sniff: Callable[[Path], bool]
    scrub: Callable[[Path, Path, SlideJob], SlideManifest]
    verify: Callable[[Path, Path, SlideJob], list[str]]
    vendor: Any = None  # a TIFF-based format's rules (levels, associated images, fields); None otherwise


_FORMATS: list[SlideFormat] = []
# Most specific first: the generic TIFF reader would accept every TIFF-based vendor file.
MODULES = ("aperio", "hamamatsu", "leica", "ventana", "philips", "mrxs", "ome", "generic_tiff")
_loaded = False


def register_format(fmt: SlideFormat) -> None:
    if any(f.name == fmt.name for f in _FORMATS):
        raise ValueError(f"slide format {fmt.name!r} registered twice")
    _FORMATS.append(fmt)


def formats() -> list[SlideFormat]:
    """Every registered format, in sniffing order (the order of MODULES)."""
    global _loaded
    if not _loaded:
        for name in MODULES:
            importlib.import_module(f"phiscrub.wsi.{name}")
        _loaded = True
        order = {m: i for i, m in enumerate(MODULES)}  # each module registers the format it is named after
        _FORMATS.sort(key=lambda f: order.get(f.name, len(order)))
    return list(_FORMATS)


def detect(path: Path) -> SlideFormat | None:
    """The format of ``path`` by content, or None when it is not a slide we know."""
    for fmt in formats():
        if fmt.sniff(path):
            return fmt
    return None

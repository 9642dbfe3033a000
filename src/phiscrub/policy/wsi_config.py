"""The `wsi` section of the config: what happens to a slide's label, macro and tiles.

Validated once at load time, with messages that name the key at fault, like the
`pixels` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_ACTIONS = ("remove", "blank", "replace")
MACRO_ACTIONS = ("remove", "blank", "replace", "redact")
TEXT_ACTIONS = ("vocabulary", "clean", "remove")
KEYS = {"label", "macro", "tile_scan", "tile_scan_levels", "annotation_text", "annotation_vocabulary"}


@dataclass(frozen=True)
class WsiConfig:
    # remove: bytes overwritten and the directory unlinked; blank: same size, black;
    # replace: a generated label showing the slide's pseudonym; redact (macro only):
    # the label end of the macro blanked, the tissue overview kept.
    label: str = "remove"
    macro: str = "remove"
    tile_scan: bool = False  # OCR of the lower-resolution levels for burned-in text
    tile_scan_levels: int = 2  # how many of the smallest pyramid levels the scan reads
    # free text in annotation files (names, titles, comments): 'vocabulary' keeps only words
    # from a list of tissue, region and measurement words (a file alone cannot tell that a
    # word is a patient's name: when in doubt, remove); 'clean' only removes what matches
    # known values and patterns; 'remove' replaces all of it
    annotation_text: str = "vocabulary"
    annotation_vocabulary: tuple[str, ...] = ()  # extra word-list files (one word a line)

    def describe(self) -> dict[str, object]:
        """What goes into the policy hash: every setting that changes output bytes."""
        return {"label": self.label, "macro": self.macro, "tile_scan": self.tile_scan,
                "tile_scan_levels": self.tile_scan_levels, "annotation_text": self.annotation_text,
                "annotation_vocabulary": list(self.annotation_vocabulary)}


def parse_wsi(doc: Any) -> WsiConfig:
    from phiscrub.errors import ConfigError

    if doc is None:
        return WsiConfig()
    if not isinstance(doc, dict):
        raise ConfigError("wsi: must be a mapping")
    unknown = set(doc) - KEYS
    if unknown:
        raise ConfigError(f"wsi: unknown key(s) {sorted(unknown)}; known: {sorted(KEYS)}")
    label = str(doc.get("label", "remove"))
    if label not in LABEL_ACTIONS:
        raise ConfigError(f"wsi.label: {label!r} is not one of {list(LABEL_ACTIONS)}")
    macro = str(doc.get("macro", "remove"))
    if macro not in MACRO_ACTIONS:
        raise ConfigError(f"wsi.macro: {macro!r} is not one of {list(MACRO_ACTIONS)}")
    scan = doc.get("tile_scan", False)
    if not isinstance(scan, bool):
        raise ConfigError("wsi.tile_scan: must be true or false")
    levels = doc.get("tile_scan_levels", 2)
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ConfigError("wsi.tile_scan_levels: must be a positive integer")
    text = str(doc.get("annotation_text", "vocabulary"))
    if text not in TEXT_ACTIONS:
        raise ConfigError(f"wsi.annotation_text: {text!r} is not one of {list(TEXT_ACTIONS)}")
    vocab = doc.get("annotation_vocabulary") or []
    if isinstance(vocab, str):
        vocab = [vocab]
    for i, v in enumerate(vocab):
        if not Path(str(v)).is_file():
            raise ConfigError(f"wsi.annotation_vocabulary[{i}]: no such file")
    return WsiConfig(label=label, macro=macro, tile_scan=scan, tile_scan_levels=levels, annotation_text=text,
                     annotation_vocabulary=tuple(str(v) for v in vocab))

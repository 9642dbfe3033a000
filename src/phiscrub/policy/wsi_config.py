"""The `wsi` section of the config: what happens to a slide's label, macro and tiles.

Validated once at load time, with messages that name the key at fault, like the
`pixels` section.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABEL_ACTIONS = ("remove", "blank", "replace")
MACRO_ACTIONS = ("remove", "blank", "replace", "redact")
TEXT_ACTIONS = ("vocabulary", "clean", "remove")
VERIFY_TILES = ("sample", "full")
KEYS = {"label", "macro", "tile_scan", "tile_scan_levels", "annotation_text", "annotation_vocabulary", "patients",
        "verify_tiles"}


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
    # copy mode's check of tile bytes against the source: 'sample' (the default) compares the
    # smallest level whole and a fixed 1/64 of the others (see phiscrub.wsi.verify), a few
    # percent of the copy's time; 'full' reads every tile of both files back. Not in
    # describe(): it changes what is checked, never a byte of the output.
    verify_tiles: str = "sample"
    # slide -> patient, from the CSV the user names (columns slide, patient and optionally
    # issuer; slide is a barcode or a file name), so that a patient's slides share one date
    # offset (wsi/patients.py). Held in memory only: the policy hash gets a digest of it.
    patients: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict[str, object]:
        """What goes into the policy hash: every setting that changes output bytes."""
        return {"label": self.label, "macro": self.macro, "tile_scan": self.tile_scan,
                "tile_scan_levels": self.tile_scan_levels, "annotation_text": self.annotation_text,
                "annotation_vocabulary": list(self.annotation_vocabulary),
                "patients": hashlib.sha256(repr(self.patients).encode()).hexdigest() if self.patients else None}


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
    verify_tiles = str(doc.get("verify_tiles", "sample"))
    if verify_tiles not in VERIFY_TILES:
        raise ConfigError(f"wsi.verify_tiles: {verify_tiles!r} is not one of {list(VERIFY_TILES)}")
    vocab = doc.get("annotation_vocabulary") or []
    if isinstance(vocab, str):
        vocab = [vocab]
    for i, v in enumerate(vocab):
        if not Path(str(v)).is_file():
            raise ConfigError(f"wsi.annotation_vocabulary[{i}]: no such file")
    patients = _patients(doc.get("patients"))
    return WsiConfig(label=label, macro=macro, tile_scan=scan, tile_scan_levels=levels, annotation_text=text,
                     annotation_vocabulary=tuple(str(v) for v in vocab), patients=patients,
                     verify_tiles=verify_tiles)


def _patients(path: Any) -> tuple[tuple[str, str], ...]:
    """The slide-to-patient CSV as (slide, patient identity) pairs. Errors name the row,
    never a value: the file holds patient IDs."""
    from phiscrub.errors import ConfigError

    if path is None:
        return ()
    p = Path(str(path))
    if not p.is_file():
        raise ConfigError("wsi.patients: no such file")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        rows = csv.DictReader(fh)
        if not rows.fieldnames or not {"slide", "patient"} <= {f.strip() for f in rows.fieldnames}:
            raise ConfigError("wsi.patients: the CSV needs a header row with columns slide and patient (issuer optional)")
        out: dict[str, str] = {}
        for n, row in enumerate(rows, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            slide, patient = row.get("slide", ""), row.get("patient", "")
            if not slide or not patient:
                raise ConfigError(f"wsi.patients: line {n}: slide and patient must both be given")
            ident = f"id:{row.get('issuer', '')}:{patient}"  # the DICOM path's patient identity
            if out.setdefault(slide, ident) != ident:
                raise ConfigError(f"wsi.patients: line {n}: this slide is mapped to two patients")
    return tuple(sorted(out.items()))

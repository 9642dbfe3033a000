"""The `pixels` section of the config: how burned-in text is handled under clean_pixel_data.

Validated once at load time, with messages that name the key at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("auto", "sensitive", "all", "none")
# Kinds of image known to carry burned-in text: 'auto' applies sensitive mode to these.
DEFAULT_TEXT_MODALITIES = ("US", "SC", "OT", "XA", "ES", "RF", "DX", "CR", "MG", "IVUS", "XC", "GM")
# Images clean_recognizable_visual_features scans for faces (pixels/faces.py), the
# documented default of `pixels.faces`: these SOP classes whatever their pixels, and colour
# (RGB or YBR) images of these modalities. Photographs, endoscopy and microscopy (still and
# video) and secondary captures (screen saves, 3-D renderings) are where faces show.
DEFAULT_FACE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.77.1.4",  # VL Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.4.1",  # Video Photographic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1",  # VL Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.1.1",  # Video Endoscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2",  # VL Microscopic Image
    "1.2.840.10008.5.1.4.1.1.77.1.2.1",  # Video Microscopic Image
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image
    "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture
)
DEFAULT_FACE_MODALITIES = ("XC", "ES", "OP", "SC", "OT")


@dataclass(frozen=True)
class PixelsConfig:
    text_redaction: str = "auto"
    modalities: tuple[str, ...] = DEFAULT_TEXT_MODALITIES
    threshold: float = 0.8
    # sensitive mode fails closed: text read with a recognition score under this (after
    # every re-reading) is treated as identifying and blanked, if the image shows
    # text-like ink there; 0 keeps it
    unreadable_below: float = 0.5
    # 'auto' screens the images it would leave alone (axial CT, MR...) with one quick
    # detection pass at half size and scans those where it sees text (pixels/screen.py)
    screen: bool = True
    # the value behind the text, per box: a box on a label patch or on black vanishes into
    # it; measured on three labelled sets, half the image altered of a black fill
    fill: int | str = "background"
    padding: int = 3
    # "ink": rows shrunk to the line's ink, so a label just above or below a name stays
    # (non-PHI kept 0.91 -> 0.98-0.99 on three labelled sets, see bench/README.md);
    # "line": the detector's line box, rows shrunk to what stands out from its border
    boxes: str = "ink"
    inpaint: bool = False
    allow: tuple[str, ...] = ()  # empty: the matcher's built-in list (phiscrub.pixels.phi_match.DEFAULT_ALLOW)
    patterns: tuple[re.Pattern[str], ...] = ()
    rules: tuple[Path, ...] = ()
    engine: str = "rapidocr"
    recheck_frames: int = 3
    # detection views: "balanced" detects on contrast-limited and inverted renderings and reads
    # from the plain ones; "all" detects on every rendering and variant (about twice the time)
    views: str = "balanced"
    on_failure: str = "quarantine"
    # pixels.faces: what the face scan looks at (see DEFAULT_FACE_SOP_CLASSES)
    face_sop_classes: tuple[str, ...] = DEFAULT_FACE_SOP_CLASSES
    face_modalities: tuple[str, ...] = DEFAULT_FACE_MODALITIES
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        """What goes into the policy hash: every setting that changes output bytes. The face
        scope only when it is not the default, so that configs without it keep their hash
        (the default is this version's, and the version is in the output)."""
        faces: dict[str, object] = {}
        if (self.face_sop_classes, self.face_modalities) != (DEFAULT_FACE_SOP_CLASSES, DEFAULT_FACE_MODALITIES):
            faces = {"faces": {"sop_classes": list(self.face_sop_classes), "modalities": list(self.face_modalities)}}
        return {**faces,
            "mode": self.text_redaction, "modalities": list(self.modalities), "threshold": self.threshold,
            "fill": self.fill, "padding": self.padding, "inpaint": self.inpaint, "allow": list(self.allow),
            "patterns": [p.pattern for p in self.patterns], "rules": [str(r) for r in self.rules],
            "engine": self.engine, "recheck": self.recheck_frames, "views": self.views,
            "boxes": self.boxes, "unreadable_below": self.unreadable_below, "screen": self.screen,
        }


KEYS = {"boxes", "views", "text_redaction", "modalities", "threshold", "fill", "padding", "inpaint", "allow", "patterns", "rules",
        "engine", "recheck_frames", "on_failure", "unreadable_below", "screen", "faces"}
FACE_KEYS = {"sop_classes", "modalities"}


def parse_pixels(doc: Any) -> PixelsConfig:
    from phiscrub.errors import ConfigError
    from phiscrub.policy.patterns import compile_patterns

    if doc is None:
        return PixelsConfig()
    if not isinstance(doc, dict):
        raise ConfigError("pixels: must be a mapping")
    unknown = set(doc) - KEYS
    if unknown:
        raise ConfigError(f"pixels: unknown key(s) {sorted(unknown)}; known: {sorted(KEYS)}")
    mode = str(doc.get("text_redaction", "auto")).lower()
    if mode not in MODES:
        raise ConfigError(f"pixels.text_redaction: use one of {list(MODES)}")
    try:
        threshold = float(doc.get("threshold", 0.8))
    except (TypeError, ValueError):
        raise ConfigError("pixels.threshold: must be a number between 0 and 1") from None
    if not 0.0 < threshold <= 1.0:
        raise ConfigError("pixels.threshold: must be a number between 0 and 1")
    try:
        unreadable = float(doc.get("unreadable_below", PixelsConfig.unreadable_below))
    except (TypeError, ValueError):
        raise ConfigError("pixels.unreadable_below: must be a number between 0 and 1") from None
    if not 0.0 <= unreadable <= 1.0:
        raise ConfigError("pixels.unreadable_below: must be a number between 0 and 1")
    screen = doc.get("screen", PixelsConfig.screen)
    if not isinstance(screen, bool):
        raise ConfigError("pixels.screen: true (the default: 'auto' screens the images it would leave alone) or false")
    fill = doc.get("fill", PixelsConfig.fill)
    if not (isinstance(fill, int) or fill in ("min", "max", "background")):
        raise ConfigError("pixels.fill: an integer, 'min', 'max' or 'background'")
    padding = doc.get("padding", 3)
    if not isinstance(padding, int) or padding < 0:
        raise ConfigError("pixels.padding: a non-negative integer")
    patterns = compile_patterns(doc.get("patterns"), "pixels.patterns")
    on_failure = str(doc.get("on_failure", "quarantine"))
    if on_failure not in ("quarantine",):
        raise ConfigError("pixels.on_failure: only 'quarantine' is supported")
    rules = tuple(Path(r) for r in doc.get("rules") or [])
    for i, r in enumerate(rules):
        if not r.is_file():
            raise ConfigError(f"pixels.rules[{i}]: no such file")
    views = str(doc.get("views", "balanced"))
    if views not in ("balanced", "all", "auto"):
        raise ConfigError("pixels.views: 'balanced' (the default), 'all' (every detection view, slower) or 'auto' (fewest views)")
    boxes = str(doc.get("boxes", PixelsConfig.boxes))
    if boxes not in ("line", "ink"):
        raise ConfigError("pixels.boxes: 'line' (detector line, shrunk to what stands out) or 'ink' (rows shrunk to the ink)")
    faces = doc.get("faces") or {}
    if not isinstance(faces, dict) or set(faces) - FACE_KEYS:
        raise ConfigError(f"pixels.faces: a mapping with {sorted(FACE_KEYS)} (lists of SOP Class UIDs and of modalities)")
    return PixelsConfig(
        face_sop_classes=tuple(str(u).strip() for u in faces.get("sop_classes", DEFAULT_FACE_SOP_CLASSES)),
        face_modalities=tuple(str(m).upper() for m in faces.get("modalities", DEFAULT_FACE_MODALITIES)),
        boxes=boxes,
        views=views,
        text_redaction=mode,
        modalities=tuple(str(m).upper() for m in doc.get("modalities", DEFAULT_TEXT_MODALITIES)),
        threshold=threshold,
        unreadable_below=unreadable,
        screen=screen,
        fill=fill,
        padding=padding,
        inpaint=bool(doc.get("inpaint", False)),
        allow=tuple(str(a) for a in doc.get("allow") or ()),
        patterns=patterns,
        rules=rules,
        engine=str(doc.get("engine", "rapidocr")),
        recheck_frames=int(doc.get("recheck_frames", 3)),
        on_failure=on_failure,
    )

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
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        """What goes into the policy hash: every setting that changes output bytes."""
        return {
            "mode": self.text_redaction, "modalities": list(self.modalities), "threshold": self.threshold,
            "fill": self.fill, "padding": self.padding, "inpaint": self.inpaint, "allow": list(self.allow),
            "patterns": [p.pattern for p in self.patterns], "rules": [str(r) for r in self.rules],
            "engine": self.engine, "recheck": self.recheck_frames, "views": self.views,
            "boxes": self.boxes, "unreadable_below": self.unreadable_below, "screen": self.screen,
        }


KEYS = {"boxes", "views", "text_redaction", "modalities", "threshold", "fill", "padding", "inpaint", "allow", "patterns", "rules",
        "engine", "recheck_frames", "on_failure", "unreadable_below", "screen"}


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
    return PixelsConfig(
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

"""Loads and validates the run configuration (YAML, or a Google DeidentifyConfig JSON).

Validation happens here, once, with messages naming the key at fault, so a bad config
fails before the first file is touched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from phiscrub.errors import ConfigError
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.overrides import Override, parse_selector
from phiscrub.policy.patterns import compile_patterns
from phiscrub.policy.pixels_config import PixelsConfig, parse_pixels
from phiscrub.policy.profile import PROFILES, Policy
from phiscrub.policy.wsi_config import WsiConfig, parse_wsi

# clean_pixel_data is on by default (with pixels.text_redaction 'auto'): a default run must
# not release a name burned into an ultrasound's pixels. A config that lists its own options
# without it turns it off, and the run says so (Config.notes).
DEFAULT_OPTIONS = (Option.RETAIN_LONGITUDINAL_MODIFIED_DATES, Option.CLEAN_PIXEL_DATA)
NO_PIXEL_CLEANING = ("clean_pixel_data is not among the config's options: text burned into the pixels"
                     " (names, IDs, dates on ultrasounds, screen captures, localizers) is released as it is")
TOP_KEYS = {"profile", "options", "tags", "date_shift", "pseudonymize_patient", "text", "workers", "pixels", "wsi", "audit"}
# six years: HIPAA's retention period for compliance documentation (45 CFR 164.316(b)(2))
DEFAULT_AUDIT_RETENTION_DAYS = 2190


@dataclass
class Config:
    policy: Policy
    text_patterns: tuple[re.Pattern[str], ...] = ()
    workers: int = 0  # 0: one per core
    pixels: PixelsConfig = field(default_factory=PixelsConfig)
    wsi: WsiConfig = field(default_factory=WsiConfig)
    # audit.retention_days: how long exported audit records are kept where they are sent
    # (the Cloud Logging bucket's or BigQuery table's retention); local records are never pruned
    audit_retention_days: int = DEFAULT_AUDIT_RETENTION_DAYS
    source: str = "defaults"
    notes: list[str] = field(default_factory=list)


def load_config(path: Path | None) -> Config:
    if path is None:
        return from_mapping({})
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"config: cannot read ({e.strerror})") from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config: invalid JSON at line {e.lineno}") from None
        from phiscrub.policy.google import from_google

        return from_google(doc)
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config: invalid YAML{where}") from None
    if not isinstance(doc, dict):
        raise ConfigError("config: the top level must be a mapping")
    return from_mapping(doc)


def parse_options(values: Any, where: str = "options") -> frozenset[Option]:
    if values is None:
        return frozenset()
    if not isinstance(values, list):
        raise ConfigError(f"{where}: must be a list of option names")
    out = set()
    for i, v in enumerate(values):
        try:
            out.add(Option(str(v).strip().lower()))
        except ValueError:
            raise ConfigError(
                f"{where}[{i}]: unknown option {v!r}; use one of {[o.value for o in Option]}"
            ) from None
    return frozenset(out)


def parse_overrides(values: Any, where: str = "tags") -> tuple[Override, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ConfigError(f"{where}: must be a list of {{select, action}} entries")
    out = []
    for i, entry in enumerate(values):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict) or "action" not in entry or "select" not in entry:
            raise ConfigError(f"{at}: needs 'select' and 'action'")
        try:
            action = Action.from_name(str(entry["action"]))
            out.append(parse_selector(entry["select"], action, at))
        except ValueError as e:
            raise ConfigError(f"{at}: {e}") from None
    return tuple(out)


def from_mapping(doc: dict[str, Any]) -> Config:
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise ConfigError(f"config: unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    profile = str(doc.get("profile", "basic"))
    if profile not in PROFILES:
        raise ConfigError(f"profile: unknown {profile!r}; use one of {list(PROFILES)}")
    options = (
        parse_options(doc["options"]) if "options" in doc else frozenset(DEFAULT_OPTIONS)
    )
    ds = doc.get("date_shift") or {}
    if not isinstance(ds, dict) or set(ds) - {"min_days", "max_days"}:
        raise ConfigError("date_shift: use a mapping with min_days and max_days")
    text = doc.get("text") or {}
    if not isinstance(text, dict) or set(text) - {"marker", "patterns"}:
        raise ConfigError("text: use a mapping with marker and patterns")
    patterns = compile_patterns(text.get("patterns"), "text.patterns")
    try:
        policy = Policy(
            profile=profile,
            options=options,
            overrides=parse_overrides(doc.get("tags")),
            date_shift_min=int(ds.get("min_days", -3650)),
            date_shift_max=int(ds.get("max_days", -1)),
            pseudonymize_patient=bool(doc.get("pseudonymize_patient", True)),
            text_marker=str(text.get("marker", "[REMOVED]")),
        )
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None
    workers = doc.get("workers", 0)
    if not isinstance(workers, int) or workers < 0:
        raise ConfigError("workers: must be a non-negative integer")
    pixels = parse_pixels(doc.get("pixels"))
    wsi = parse_wsi(doc.get("wsi"))
    reads_pixels = Option.CLEAN_PIXEL_DATA in policy.options or Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES in policy.options
    policy.extra_digest = {**(pixels.describe() if reads_pixels else {}), "wsi": wsi.describe()}
    notes = [] if Option.CLEAN_PIXEL_DATA in policy.options else [NO_PIXEL_CLEANING]
    return Config(policy=policy, text_patterns=patterns, workers=workers, source="yaml", pixels=pixels, wsi=wsi,
                  audit_retention_days=_audit_retention(doc.get("audit")), notes=notes)


def _audit_retention(doc: Any) -> int:
    if doc is None:
        return DEFAULT_AUDIT_RETENTION_DAYS
    if not isinstance(doc, dict) or set(doc) - {"retention_days"}:
        raise ConfigError("audit: use a mapping with retention_days")
    days = doc.get("retention_days", DEFAULT_AUDIT_RETENTION_DAYS)
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ConfigError("audit.retention_days: must be a positive integer (days)")
    return days

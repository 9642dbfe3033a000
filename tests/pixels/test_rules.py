"""Static region rules: the shipped library loads, and signatures match as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from phiscrub.errors import ConfigError
from phiscrub.pixels.rules import builtin_rules, matching_boxes, parse_rules


def test_builtin_library_loads() -> None:
    assert len(builtin_rules()) >= 25


def test_signature_match_and_user_rules(tmp_path: Path) -> None:
    ds = Dataset()
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "US", "Philips Medical", "iU22 xMATRIX"
    ds.Rows, ds.Columns = 600, 800
    boxes = matching_boxes(ds)
    assert [(b.x, b.y, b.w, b.h) for b in boxes] == [(0, 0, 800, 59)]
    ds.Rows = 512
    assert matching_boxes(ds) == []
    extra = tmp_path / "mine.yaml"
    extra.write_text("rules:\n  - name: ours\n    match: [{keyword: Modality, equals: US}]\n    regions: [[1, 2, 3, 4]]\n")
    assert [(b.x, b.y, b.w, b.h, b.reason) for b in matching_boxes(ds, (extra,))] == [(1, 2, 3, 4, "static-rule")]


def test_bad_rule_names_the_rule() -> None:
    with pytest.raises(ConfigError, match=r"rules\[0\]"):
        parse_rules("rules:\n  - match: [{keyword: NoSuchThing, equals: x}]\n    regions: [[0,0,1,1]]\n", "x.yaml")

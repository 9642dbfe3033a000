"""Private attributes known to be safe, per private creator, for retain_safe_private.

The list is data (data/safe_private.csv): the creator, the element's low byte and the
action (K, or C to clean). Anything not listed is removed.
"""

from __future__ import annotations

import csv
from functools import cache
from importlib import resources


@cache
def _table() -> dict[tuple[str, int, int], str]:
    text = resources.files("phiscrub.policy.data").joinpath("safe_private.csv").read_text()
    rows = {}
    for r in csv.DictReader(line for line in text.splitlines() if not line.startswith("#")):
        rows[(r["creator"].strip(), int(r["group"], 16), int(r["element"], 16))] = r["action"]
    return rows


def safe_private_action(tag: int, creator: str) -> str | None:
    return _table().get((creator.strip(), tag >> 16, tag & 0xFF))

"""Leak scanning for slide outputs: every planted value, in every form a format may store
it (UTF-8, Latin-1, UTF-16 both ways, Base64 at every alignment), in every byte and name."""

from __future__ import annotations

import base64
from pathlib import Path


def forms(value: str) -> tuple[set[bytes], set[bytes]]:
    """(text forms, compared case-insensitively; Base64 forms, compared exactly)."""
    text: set[bytes] = set()
    b64: set[bytes] = set()
    for v in {value, value.upper(), value.lower()}:
        for enc in ("utf-8", "latin-1", "utf-16-le", "utf-16-be"):
            try:
                text.add(v.encode(enc).lower() if enc in ("utf-8", "latin-1") else v.encode(enc))
            except UnicodeEncodeError:
                pass
        raw = v.encode("utf-8")
        for pad in range(3):  # the value at each of the three alignments of a Base64 stream
            enc64 = base64.b64encode(b"\x00" * pad + raw)
            core = enc64[4 if pad else 0: -4]
            if len(core) >= 6:
                b64.add(core)
    return text, b64


def scan_bytes(data: bytes, planted: list[str]) -> list[str]:
    low = data.lower()
    hits = []
    for p in planted:
        text, b64 = forms(p)
        if any(f in low or f in data for f in text) or any(f in data for f in b64):
            hits.append(p)
    return hits


def scan_tree(root: Path, planted: list[str]) -> dict[str, list[str]]:
    """Relative path -> planted values found in its bytes or its name."""
    hits: dict[str, list[str]] = {}
    paths = [root] if root.is_file() else sorted(root.rglob("*"))
    for path in paths:
        rel = path.name if path == root else str(path.relative_to(root))
        found = [p for p in planted if p.lower() in rel.lower()]
        if path.is_file():
            found += scan_bytes(path.read_bytes(), planted)
        if found:
            hits[rel] = sorted(set(found))
    return hits

"""Shared fixtures: a key, pydicom's bundled test files, and a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from phiscrub.cli import app

TEST_FILES = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"
KEY = "test-key-0123456789abcdef0123"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHISCRUB_KEY", KEY)


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str, env: dict | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


def scan_tree(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Every planted value (as planted, upper, lower) in every byte and path under root."""
    forms = set()
    for n in needles:
        if len(n) >= 4:
            forms |= {n, n.upper(), n.lower()}
    hits: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        blob = rel.encode() + b"\n" + (path.read_bytes() if path.is_file() else b"")
        for f in forms:
            if f.encode("utf-8") in blob or f.encode("latin-1", "ignore") in blob:
                hits.setdefault(f, []).append(rel)
    return hits

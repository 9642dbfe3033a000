"""Shared fixtures: a key, pydicom's bundled test files, and a CLI runner; and the rule
that CI does not skip.

Why the rule: a test that skips because a Debian package or a service is missing looks
green while testing nothing. Locally that is fine (skips are listed with their reasons:
`-rfEs` in pyproject's addopts); under CI=true such a skip fails the run instead, so a CI
machine that lost `dciodvfy` or Orthanc cannot pass. A skip is accepted in CI only where
its test is marked ``@pytest.mark.allow_skip("why")``, or its reason names one of the
ALLOWED_SKIPS below: data the project does not install anywhere, on purpose.
"""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from phiscrub.cli import app

TEST_FILES = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files"
KEY = "test-key-0123456789abcdef0123"


# reason text (a substring of the skip's reason) -> why CI may skip it
ALLOWED_SKIPS = {
    "not bundled": "pydicom's own test files differ between its releases; the pinned release decides",
    "pydicom-data not installed": "pydicom-data is a separate download (GitHub), not a package CI installs",
    "shared real data folder": "real images outside the repository (../shared/real-data), not redistributable",
}


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(reason: str, marker: pytest.Mark | None) -> bool:
    return marker is not None or any(key in reason for key in ALLOWED_SKIPS)


def _fail_skip(report: pytest.TestReport | pytest.CollectReport, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI=true, which does not skip: {reason} "
                       "(install it: bash .ci/install apt, as root; or mark the test allow_skip: tests/conftest.py)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail") or not in_ci():
        return
    reason = _skip_reason(report)
    if not _allowed(reason, item.get_closest_marker("allow_skip")):
        _fail_skip(report, reason)


_MODULE_SKIPS: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """A whole module that skips (importorskip at top level): made a failure at the end of
    the session rather than a collection error, which would stop every other test."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and in_ci():
        reason = _skip_reason(report)
        if not _allowed(reason, None):
            _MODULE_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter) -> None:
    if _MODULE_SKIPS:
        terminalreporter.section("modules skipped under CI=true (a failure)", red=True)
        for line in _MODULE_SKIPS:
            terminalreporter.line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _MODULE_SKIPS and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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

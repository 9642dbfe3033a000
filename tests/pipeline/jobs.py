"""A small finished job for the verify, audit, report and broker tests: one synthetic
study with planted PHI, de-identified through the CLI."""

from __future__ import annotations

from pathlib import Path

from phiscrub.demo import make_study
from tests.conftest import scan_tree

__all__ = ["make_job", "scan_tree"]


def make_job(cli, tmp_path: Path, *extra: str, n_ct: int = 2, n_mr: int = 1, config: Path | None = None):
    """(src, dst, planted values, result of the deidentify run)."""
    src = tmp_path / "in"
    planted, _ = make_study(src, n_ct=n_ct, n_mr=n_mr)
    dst = tmp_path / "out"
    args = ["deidentify", src, dst, "-q", *extra]
    if config is not None:
        args += ["--config", config]
    res = cli(*args)
    return src, dst, planted.values, res

"""A small finished job for the verify, audit, report and broker tests: one synthetic
study with planted PHI, de-identified through the CLI."""

from __future__ import annotations

from pathlib import Path

from phiscrub.demo import make_study
from tests.conftest import scan_tree

__all__ = ["make_job", "rules_config", "scan_tree"]

RULES = "rules:\n  - name: top banner\n    match: [{keyword: Modality, equals: CT}]\n    regions: [[4, 4, 90, 18], [20, 100, 60, 12]]\n"


def rules_config(tmp_path: Path) -> Path:
    """A config that blanks a fixed banner on CT by rule (no OCR: quick and exact), with
    longitudinal dates, so a report has redactions to draw."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("options: [clean_pixel_data, retain_longitudinal_modified_dates]\n"
                   f"pixels: {{text_redaction: none, rules: [{rules}]}}\n")
    return cfg


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

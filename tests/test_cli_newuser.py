"""Issue 18 item 5, what a new user trips on: inspect's actions, --workers' shown default,
the pace line of a slow run, an empty source, a DICOMDIR, --version and init."""

from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from phiscrub.cli import pace
from phiscrub.inspect import plan_rows
from phiscrub.keys import load_key
from phiscrub.pipeline.audit import verify_chain
from phiscrub.policy.config import TOP_KEYS, from_mapping, load_config

from .conftest import TEST_FILES

CT = TEST_FILES / "CT_small.dcm"


def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def _row(rows, keyword_hex: str):
    return next(r for r in rows if r[0].strip() == keyword_hex)


# -- inspect: the action shown is the one that happens


def test_inspect_shows_a_date_shift_not_clean(tmp_path: Path) -> None:
    # Instance Creation Date: unlisted, so the date safety net's C; Study Date: the option's C
    rows = plan_rows(CT.read_bytes(), from_mapping({}))
    for tag in ("(0008,0012)", "(0008,0020)"):
        assert _row(rows, tag)[3] == "shift"
    assert _row(rows, "(0008,0030)")[3] == "keep"  # a time of day: whole-day offsets leave it
    assert not any(r[3] == "clean" and r[2] in ("DA", "DT", "TM") for r in rows)
    # an override's clean_text on a date is header._clean's: a shift, not a text clean
    rows = plan_rows(CT.read_bytes(), from_mapping({"tags": [{"select": "ContentDate", "action": "clean_text"}]}))
    assert _row(rows, "(0008,0023)")[3] == "shift"
    full = plan_rows(CT.read_bytes(), from_mapping({"options": ["retain_longitudinal_full_dates"]}))
    for tag in ("(0008,0012)", "(0008,0020)"):
        assert _row(full, tag)[3] == "keep"


def test_inspect_names_what_clean_does_on_other_vrs() -> None:
    rows = plan_rows(CT.read_bytes(), from_mapping({}))
    assert _row(rows, "(0008,0201)")[3] == "keep if ±HHMM"  # Timezone Offset From UTC
    cfg = from_mapping({"tags": [{"select": "Manufacturer", "action": "clean"},
                                 {"select": "SliceThickness", "action": "clean"},
                                 {"select": "StationName", "action": "shift_date"}]})
    rows = plan_rows(CT.read_bytes(), cfg)
    assert _row(rows, "(0008,0070)")[3] == "clean text"
    assert _row(rows, "(0018,0050)")[3] == "keep"  # a number: nothing for the text cleaner
    assert _row(rows, "(0008,1010)")[3] == "dummy"  # a date shift of no date: header._apply dummies it


def test_inspect_pixel_data_names_the_pixel_stage(tmp_path: Path) -> None:
    def pixel(cfg, path=CT):
        return _row(plan_rows(Path(path).read_bytes(), cfg), "(7FE0,0010)")

    # an axial CT under the default auto mode: screened, scanned in full where text shows
    assert pixel(from_mapping({}))[3] == "pixel stage (auto: screen)"
    # a secondary capture: auto takes it as carrying text
    assert pixel(from_mapping({}), TEST_FILES / "SC_rgb_gdcm_KY.dcm")[3] == "pixel stage (auto: sensitive)"
    assert pixel(from_mapping({"pixels": {"text_redaction": "all"}}))[3] == "pixel stage (all)"
    assert pixel(from_mapping({"pixels": {"text_redaction": "sensitive"}}))[3] == "pixel stage (sensitive)"
    no_screen = pixel(from_mapping({"pixels": {"screen": False}}))
    assert no_screen[3] == "keep" and "screen off" in no_screen[4]
    off = pixel(from_mapping({"options": ["retain_longitudinal_modified_dates"]}))
    assert off[3] == "keep" and "clean_pixel_data off" in off[4]


def test_inspect_cli_shows_the_pixel_stage(cli) -> None:
    res = cli("inspect", CT)
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "Pixel Data" in ln)
    assert "pixel stage (auto: screen)" in line


# -- deidentify's options and summary


def test_workers_help_shows_no_minus_one(cli) -> None:
    res = cli("deidentify", "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if "--workers" in ln)
    assert "-1" not in line and "0: one per core" in line and "config" in line


def test_negative_workers_is_a_usage_error(cli, tmp_path: Path) -> None:
    res = cli("deidentify", CT, tmp_path / "out", "-q", "--workers", "-1")
    assert res.exit_code == 2


def test_pace_says_seconds_per_file_below_one_file_a_second() -> None:
    assert pace(10, 2.0) == " (5 files/s)"
    assert pace(3, 12.0) == " (4.0 s/file)"
    assert pace(1, 0.9) == " (1 files/s)"
    assert pace(0, 3.0) == ""  # nothing processed (a resumed run): no rate at all
    assert "0 files/s" not in pace(1, 250.0)


def test_empty_source_folder_exits_1_with_a_message(cli, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    res = cli("deidentify", tmp_path / "in", tmp_path / "out", "-q")
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no input files found" in lines[0] and str(tmp_path / "in") in lines[0]


def test_exit_codes_are_in_the_help(cli) -> None:
    res = cli("deidentify", "--help", env={"COLUMNS": "200"})
    text = " ".join(res.output.split())
    assert "Exit codes" in text and "no input file" in text


def test_dicomdir_is_dropped_with_a_note_and_the_run_exits_0(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), src / "DICOMDIR")
    shutil.copy(CT, src / "ct.dcm")
    assert str(dcmread(src / "DICOMDIR").file_meta.MediaStorageSOPClassUID) == "1.2.840.10008.1.3.10"
    q = tmp_path / "quarantine"
    res = cli("deidentify", src, tmp_path / "out", "-q", "-j", "1", "--quarantine", q)
    assert res.exit_code == 0, res.output
    assert "1 done, 1 DICOMDIR dropped, 0 quarantined, 0 failed" in res.output
    assert "DICOMDIR media index dropped: it indexes source paths and names; the output tree gets none" in res.output
    assert "quarantined:" not in res.output and not q.exists()  # no copy of it kept: nothing failed
    state = tmp_path / "out" / ".phiscrub"
    assert json.loads((state / "last-run.json").read_text())["media_indexes_dropped"] == 1
    recs = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    assert verify_chain(state / "audit.jsonl")[0]
    dropped = [r for r in recs if r["event"] == "item" and r["status"] == "dropped"]
    assert len(dropped) == 1 and dropped[0]["category"] == "media-index"
    assert dropped[0]["reason"].startswith("DICOMDIR media index dropped")
    assert [r["media_indexes_dropped"] for r in recs if r["event"] == "run-end"] == [1]
    outs = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and ".phiscrub" not in p.parts]
    assert len(outs) == 1 and outs[0].suffix == ".dcm"  # the instance; no index of any kind
    # the job verifies clean, and a rerun skips both as finished
    assert cli("verify", src, tmp_path / "out", "--no-ocr").exit_code == 0
    again = cli("deidentify", src, tmp_path / "out", "-q", "-j", "1")
    assert again.exit_code == 0 and "2 item(s) already done" in again.output


def test_a_dicomdir_alone_is_no_failure(cli, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), src / "DICOMDIR")
    res = cli("deidentify", src, tmp_path / "out", "-q", "-j", "1")
    assert res.exit_code == 0, res.output
    assert "0 done, 1 DICOMDIR dropped" in res.output and "dropped by policy" not in res.output


# -- --version and init


def test_version_prints_the_installed_version(cli) -> None:
    res = cli("--version")
    assert res.exit_code == 0
    assert res.output.strip() == f"phiscrub {version('phiscrub')}"


def test_init_writes_a_config_that_loads_to_the_defaults_and_a_0600_key(cli, tmp_path: Path) -> None:
    d = tmp_path / "project"
    res = cli("init", d)
    assert res.exit_code == 0, res.output
    config, key = d / "phiscrub.yaml", d / "phiscrub.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(load_key(key).secret) >= 32
    loaded = load_config(config)
    default = from_mapping({})
    assert loaded.policy.digest() == default.policy.digest()
    assert loaded.workers == default.workers and loaded.notes == []
    assert loaded.audit_retention_days == default.audit_retention_days
    text = config.read_text()
    lines = text.splitlines()
    for k in TOP_KEYS:  # every top-level key, with a comment line just above it
        i = next(n for n, ln in enumerate(lines) if re.match(rf"{k}:", ln))
        assert lines[i - 1].startswith("# "), k
    # the next commands, with the files just written
    out = " ".join(res.output.split())
    assert f"phiscrub deidentify SRC DST --config {config} --key-file {key}" in out
    assert f"phiscrub verify SRC DST --config {config} --key-file {key}" in out
    assert "phiscrub report DST" in out


def test_init_keys_differ(cli, tmp_path: Path) -> None:
    assert cli("init", tmp_path / "a").exit_code == 0
    assert cli("init", tmp_path / "b").exit_code == 0
    assert (tmp_path / "a" / "phiscrub.key").read_text() != (tmp_path / "b" / "phiscrub.key").read_text()


@pytest.mark.parametrize("existing", ["phiscrub.yaml", "phiscrub.key"])
def test_init_never_overwrites(cli, tmp_path: Path, existing: str) -> None:
    d = tmp_path / "project"
    d.mkdir()
    (d / existing).write_text("mine\n")
    res = cli("init", d)
    assert res.exit_code == 1
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "already exists" in lines[0]
    assert (d / existing).read_text() == "mine\n"
    assert [p.name for p in d.iterdir()] == [existing]  # the other file is not written either


def test_init_config_runs(cli, tmp_path: Path) -> None:
    assert cli("init", tmp_path / "p").exit_code == 0
    res = cli("deidentify", CT, tmp_path / "out", "-q", "-j", "1", "--config", tmp_path / "p" / "phiscrub.yaml",
              "--key-file", tmp_path / "p" / "phiscrub.key", env={"PHISCRUB_KEY": ""})
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1

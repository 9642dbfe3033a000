"""Safe by default (issue 16, step 5): with no config, clean_pixel_data runs in 'auto' mode,
'auto' reaches localizers and derived or secondary images, a config that leaves the option
out says so, and the run and its report count the images scanned and left alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from phiscrub.pipeline.report import build_report
from phiscrub.pixels import effective_mode
from phiscrub.policy.actions import Option
from phiscrub.policy.config import NO_PIXEL_CLEANING, from_mapping, load_config
from phiscrub.policy.pixels_config import PixelsConfig
from tests.conftest import TEST_FILES


def _image(modality: str, image_type: list[str] | str | None) -> Dataset:
    ds = Dataset()
    ds.Modality = modality
    if image_type is not None:
        ds.ImageType = image_type
    return ds


@pytest.mark.parametrize(("modality", "image_type", "mode"), [
    ("CT", ["ORIGINAL", "PRIMARY", "AXIAL"], "none"),
    ("MR", ["ORIGINAL", "PRIMARY", "M", "ND"], "none"),
    ("CT", None, "none"),
    ("CT", ["ORIGINAL", "PRIMARY", "LOCALIZER"], "sensitive"),
    ("MR", ["ORIGINAL", "PRIMARY", "LOCALIZER"], "sensitive"),
    ("PT", ["ORIGINAL", "PRIMARY", "LOCALIZER"], "sensitive"),
    ("CT", ["DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"], "sensitive"),
    ("MR", ["DERIVED", "PRIMARY", "MPR"], "sensitive"),
    ("CT", "ORIGINAL\\SECONDARY", "sensitive"),
    ("NM", ["ORIGINAL", "PRIMARY", "SCREEN SAVE"], "sensitive"),
    ("US", ["ORIGINAL", "PRIMARY"], "sensitive"),
])
def test_auto_reaches_localizers_and_derived_images(modality: str, image_type, mode: str) -> None:
    assert effective_mode(_image(modality, image_type), PixelsConfig()) == mode


def test_an_explicit_mode_is_not_second_guessed() -> None:
    ds = _image("CT", ["ORIGINAL", "PRIMARY", "LOCALIZER"])
    assert effective_mode(ds, PixelsConfig(text_redaction="none")) == "none"
    assert effective_mode(_image("CT", ["ORIGINAL", "PRIMARY", "AXIAL"]), PixelsConfig(text_redaction="all")) == "all"


def test_the_default_config_cleans_pixels_in_auto_mode() -> None:
    cfg = load_config(None)
    assert Option.CLEAN_PIXEL_DATA in cfg.policy.options
    assert cfg.pixels.text_redaction == "auto"
    assert cfg.notes == []


def test_options_without_clean_pixel_data_carry_a_note() -> None:
    cfg = from_mapping({"options": ["retain_longitudinal_modified_dates"]})
    assert Option.CLEAN_PIXEL_DATA not in cfg.policy.options
    assert cfg.notes == [NO_PIXEL_CLEANING]


def _job(cli, tmp_path: Path, config: str | None):
    src = tmp_path / "in"
    src.mkdir()
    # an axial CT (left alone by 'auto') and a CT localizer from the same file
    shutil.copy(TEST_FILES / "CT_small.dcm", src / "axial.dcm")
    scout = dcmread(TEST_FILES / "CT_small.dcm")
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.SOPInstanceUID = scout.SOPInstanceUID + ".9"
    scout.save_as(src / "scout.dcm")
    args = ["deidentify", src, tmp_path / "out", "-q", "-j", "1"]
    if config is not None:
        (tmp_path / "c.yaml").write_text(config)
        args += ["-c", tmp_path / "c.yaml"]
    return cli(*args)


def test_the_run_and_the_report_count_images_scanned_screened_and_left_alone(cli, tmp_path: Path) -> None:
    """The localizer is scanned (its header says text may be there); the axial CT is not,
    but 'auto' screens it, finds no text and leaves it as it came."""
    res = _job(cli, tmp_path, None)
    assert res.exit_code == 0, res.output
    assert "burned-in text: 1 image(s) scanned, 1 screened and found clear" in res.output
    assert "pixels.text_redaction: sensitive scans every image" in res.output  # how to reach the rest
    assert "note:" not in res.output
    state = tmp_path / "out" / ".phiscrub"
    last = json.loads((state / "last-run.json").read_text())
    assert (last["pixels_scanned"], last["pixels_screened"], last["pixels_left_alone"]) == (1, 1, 0)
    end = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines() if '"run-end"' in x][-1]
    assert (end["pixels_scanned"], end["pixels_screened"], end["pixels_left_alone"]) == (1, 1, 0)
    html = build_report(tmp_path / "out")
    assert "Burned-in text" in html
    assert "<b>1</b>images scanned for text" in html and "<b>1</b>screened and found clear" in html
    axial = dcmread(next(p for p in (tmp_path / "out").rglob("*.dcm") if ".phiscrub" not in p.parts
                         and "LOCALIZER" not in dcmread(p, stop_before_pixels=True).ImageType))
    assert axial.PixelData == dcmread(TEST_FILES / "CT_small.dcm").PixelData  # screened clear: untouched


def test_with_the_screen_off_auto_leaves_axial_images_alone_and_says_why(cli, tmp_path: Path) -> None:
    res = _job(cli, tmp_path, "options: [clean_pixel_data]\npixels: {screen: false}\n")
    assert res.exit_code == 0, res.output
    assert ("burned-in text: 1 image(s) scanned, 1 left alone (their header gives no sign of burned-in text and"
            " pixels.screen is off)") in res.output
    html = build_report(tmp_path / "out")
    assert "<b>1</b>left alone" in html


def test_text_redaction_none_leaves_every_image_alone_and_says_why(cli, tmp_path: Path) -> None:
    res = _job(cli, tmp_path, "options: [clean_pixel_data]\npixels: {text_redaction: none}\n")
    assert res.exit_code == 0, res.output
    assert "burned-in text: 0 image(s) scanned, 2 left alone (pixels.text_redaction: none)" in res.output


def test_a_config_without_clean_pixel_data_says_so(cli, tmp_path: Path) -> None:
    res = _job(cli, tmp_path, "options: [retain_longitudinal_modified_dates]\n")
    assert res.exit_code == 0, res.output
    assert "note:" in res.output and "clean_pixel_data is not among the config's options" in res.output
    assert "burned-in text:" not in res.output  # nothing was judged
    assert "no image was judged" in build_report(tmp_path / "out")


@pytest.mark.parametrize("name", ["JPEG2000.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPGExtended.dcm"])
def test_default_scan_that_finds_no_text_keeps_the_stored_pixels(cli, tmp_path: Path, name: str) -> None:
    """Compressed images 'auto' scans (derived, secondary capture) and finds no text in leave
    with their pixel data byte for byte: no re-encoding, no lossy-to-lossless change."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(TEST_FILES / name, src / name)
    res = cli("deidentify", src, tmp_path / "out", "-q", "-j", "1")
    assert res.exit_code == 0, res.output
    assert "1 image(s) scanned" in res.output
    (out,) = list((tmp_path / "out").rglob("*.dcm"))
    a, b = dcmread(TEST_FILES / name), dcmread(out)
    assert b.file_meta.TransferSyntaxUID == a.file_meta.TransferSyntaxUID
    assert a.PixelData == b.PixelData
    assert b.BurnedInAnnotation == "NO"

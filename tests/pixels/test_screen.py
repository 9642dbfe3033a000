"""'auto' screens the images its header gives no sign of text for (issue 16, step 5): an
axial CT with a patient block burned across the body is found and cleaned, a text-free one
leaves untouched, and the screen can be turned off."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from phiscrub.errors import ConfigError
from phiscrub.keys import KeyRing
from phiscrub.pixels.boxes import Box
from phiscrub.pixels.engines import get_engine
from phiscrub.pixels.screen import finds_text
from phiscrub.policy.config import from_mapping
from phiscrub.policy.pixels_config import parse_pixels
from phiscrub.transform import transform_dicom
from tests.conftest import KEY, TEST_FILES
from tests.pixels._burn import text_mask, uncovered

NAME = "WHITFORD^ROSALIND"
LINES = ("Name: WHITFORD ROSALIND", "ID: 88123407", "DOB: 1948-02-17")


def _axial(with_text: bool) -> tuple[Dataset, np.ndarray]:
    """pydicom's CT_small enlarged to 512x512, an ORIGINAL/PRIMARY/AXIAL slice; with_text:
    a patient block burned at the image's top value across the body. Returns the dataset
    and the mask of the burned value pixels."""
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    img = cv2.resize(ds.pixel_array, (512, 512), interpolation=cv2.INTER_CUBIC).astype(ds.pixel_array.dtype)
    mask = np.zeros(img.shape, dtype=bool)
    if with_text:
        for k, line in enumerate(LINES):
            m = text_mask(img.shape, line.upper(), (150, 250 + 24 * k), scale=0.6)
            mask |= m
            img[m] = img.max()
    ds.Rows, ds.Columns = img.shape
    ds.PixelData = img.tobytes()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName = NAME
    ds.PatientBirthDate = "19480217"
    ds.PatientID = "88123407"
    ds.BurnedInAnnotation = "NO"  # what many scanners write whatever is on the image
    return ds, mask


def _run(ds: Dataset, doc: dict | None = None) -> tuple[Dataset, dict]:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    cfg = from_mapping(doc or {})
    out = transform_dicom(buf.getvalue(), cfg, KeyRing(KEY.encode()), cfg.policy.digest())
    return dcmread(io.BytesIO(out.data)), out.manifest["pixels"]


def test_the_screen_sees_a_block_over_the_body_and_nothing_on_a_clean_slice() -> None:
    engine = get_engine("rapidocr")
    text, _ = _axial(True)
    clean, _ = _axial(False)
    assert finds_text(text.pixel_array[None], "MONOCHROME2", engine, text)
    assert not finds_text(clean.pixel_array[None], "MONOCHROME2", engine, clean)


def test_default_auto_cleans_text_the_header_says_nothing_of() -> None:
    ds, mask = _axial(True)
    out, pixels = _run(ds)
    assert pixels["screen"] == "text" and pixels["mode"] == "sensitive"
    boxes = [Box(b["x"], b["y"], b["w"], b["h"]) for b in pixels["boxes"]]
    assert uncovered(mask, boxes) == 0, "a burned name or date pixel outside every box"
    assert (out.pixel_array[mask] != ds.pixel_array[mask]).mean() > 0.95


def test_a_clean_axial_slice_is_screened_and_left_as_it_came() -> None:
    ds, _ = _axial(False)
    out, pixels = _run(ds)
    assert pixels["screen"] == "clear" and pixels["mode"] == "none" and not pixels["boxes"]
    assert out.PixelData == ds.PixelData


def test_the_screen_can_be_turned_off() -> None:
    ds, _ = _axial(True)
    out, pixels = _run(ds, {"pixels": {"screen": False}})
    assert "screen" not in pixels and pixels["mode"] == "none"
    assert out.PixelData == ds.PixelData  # what the user asked for: text stays
    with pytest.raises(ConfigError, match="pixels.screen"):
        parse_pixels({"screen": "yes"})
    assert parse_pixels({}).describe() != parse_pixels({"screen": False}).describe()

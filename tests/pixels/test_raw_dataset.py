"""A raw data set (no preamble, no file meta, as old archives hold) through the pixel stage:
the syntax it reports is the one pydicom read the data set in, as the decode used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from phiscrub.pixels import clean_pixels
from phiscrub.policy.pixels_config import parse_pixels


def test_a_raw_data_set_with_no_text_is_scanned(tmp_path: Path) -> None:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()  # secondary capture
    ds.Modality, ds.Rows, ds.Columns = "OT", 64, 96
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((64, 96), 40, np.uint8).tobytes()
    raw = tmp_path / "raw.dcm"
    dcmwrite(raw, ds, enforce_file_format=False, implicit_vr=False, little_endian=True)
    src = dcmread(raw, force=True)
    assert "TransferSyntaxUID" not in getattr(src, "file_meta", {})
    out = clean_pixels(src, parse_pixels({"text_redaction": "sensitive"}))
    assert out.performed and out.boxes == [] and out.syntax == ExplicitVRLittleEndian

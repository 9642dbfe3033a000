"""The burned-in text benchmark's coverage rule (bench/bench_pixels.py): what counts as a
PHI character covered decides the recall it reports, so it is tested like code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
bench = pytest.importorskip("bench_pixels")


def _field() -> tuple[np.ndarray, list[int], list[list[int]]]:
    """Dark text (value 5) on a light label patch (values 214-230, as a JPEG leaves it)."""
    rng = np.random.default_rng(0)
    img = rng.integers(214, 231, (30, 60, 1)).astype(np.int32)
    chars = [[2 + 12 * k, 5, 12 + 12 * k, 20] for k in range(4)]
    for x0, y0, _x1, y1 in chars:
        img[y0 + 2:y1 - 2, x0 + 3:x0 + 6] = 5  # a stroke per character
    return img, [2, 5, 50, 20], chars


def _covered(src: np.ndarray, out: np.ndarray, box, chars, tol: int = 8) -> bool:
    changed = np.abs(out - src).max(axis=-1) > tol
    return bench._box_covered(changed, out, box, chars, tol)


def test_two_background_fills_over_one_field_cover_it() -> None:
    src, box, chars = _field()
    out = src.copy()
    out[:14] = 213  # the field's box filled with its patch colour ...
    out[14:] = 222  # ... and a second box over its lower rows with its own estimate
    assert _covered(src, out, box, chars)


def test_ink_left_under_a_partial_fill_is_not_covered() -> None:
    src, box, chars = _field()
    out = src.copy()
    out[:14] = 213  # the lower rows untouched: the strokes' lower half still there
    assert not _covered(src, out, box, chars)
    out = src.copy()
    out[:, :38] = 0  # the last character left whole
    assert not _covered(src, out, box, chars)
    out[:, 38:] = 0
    assert _covered(src, out, box, chars)


def _labelled() -> tuple[bytes, dict]:
    """A 40x80 8-bit grey image (value 100, the darkest 0) with one PHI field of four characters."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    arr = np.full((40, 80), 100, dtype=np.uint8)
    arr[0, 0] = 0
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 40, 80, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    ds.preamble = b"\0" * 128  # a Part 10 file, as the set's are
    box = [20, 10, 60, 22]
    chars = [[20 + 10 * k, 10, 30 + 10 * k, 22] for k in range(4)]
    entry = {"frames": 1, "lossy": False, "fields": [{"kind": "phi", "frames": [0, 1], "box": box, "chars": chars}]}
    return bench._save(ds), entry


def test_the_padded_oracle_covers_every_field_and_alters_only_its_one_pixel_margin() -> None:
    data, entry = _labelled()
    inp, ds = bench._decode(data)
    exact = bench.score_file("x", entry, inp, ds, bench.Oracle().redact(data, entry))
    padded = bench.score_file("x", entry, inp, ds, bench.PaddedOracle().redact(data, entry))
    assert exact.phi == [True] and padded.phi == [True]
    assert exact.nontext_altered == 0.0
    margin = (42 * 14 - 40 * 12) / (40 * 80 - 40 * 12)  # the ring of one pixel around the field's box
    assert padded.nontext_altered == pytest.approx(margin)

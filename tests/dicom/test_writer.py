"""dicom/writer.py writes exactly the bytes pydicom's save_as writes, or fails where it fails.

The inputs are files we did not make (every test file pydicom ships), the demo study, and
damaged files made from both (the fuzz corpus's mutations): read as they are, and after a
real transform, whose output mixes raw elements, changed ones, converted sequences, items
made from scratch (the de-identification stamp) and items read in another encoding.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread

from phiscrub.dicom.reader import read_instance
from phiscrub.dicom.writer import encode
from phiscrub.keys import load_key
from phiscrub.policy.config import from_mapping
from phiscrub.transform import transform_dataset

from ..conftest import TEST_FILES
from ..fuzz_corpus import bases, mutants

OPTIONS = ["clean_descriptors", "clean_structured_content", "retain_longitudinal_modified_dates", "retain_safe_private"]


def _pydicom_files() -> list[Path]:
    return sorted(p for p in TEST_FILES.rglob("*") if p.is_file() and p.stat().st_size < 8 << 20)


def _save_as(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _same_or_both_fail(data: bytes) -> str:
    """'same', 'both-fail' or 'unreadable' for one file read as it is."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds, again = dcmread(io.BytesIO(data), force=True), dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - not for either writer to judge
        return "unreadable"
    for d in (ds, again):
        if hasattr(d, "file_meta"):
            d.preamble = b"\x00" * 128
    try:
        want = _save_as(ds)
    except Exception as e:  # noqa: BLE001
        with pytest.raises(type(e)):
            encode(again)
        return "both-fail"
    assert encode(again) == want
    return "same"


def test_pydicom_test_files_as_read():
    seen = [_same_or_both_fail(p.read_bytes()) for p in _pydicom_files()]
    assert seen.count("same") >= 100  # the test files pydicom ships, less the ones that are no DICOM


def test_transformed_outputs(tmp_path):
    """The output phiscrub writes equals save_as of the same transformed data set."""
    config = from_mapping({"profile": "basic", "options": OPTIONS})
    keys = load_key(None)
    compared = 0
    sound = bases(tmp_path, 15)
    # damaged files too: what the transform changes in them is what the writer's own text
    # path writes (odd lengths, empty and multiple values, character sets it hands back)
    files = ([p.read_bytes() for p in _pydicom_files()] + [b.data for b in sound]
             + [m.data for m in mutants(sound, 400, seed=17)])
    for data in files:
        try:
            ds = read_instance(data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = transform_dataset(ds, config, keys, "0" * 64)
        except Exception:  # noqa: BLE001 - quarantined in a real run; nothing is written
            continue
        assert out.data == _save_as(ds)
        compared += 1
    assert compared >= 250


def test_damaged_files(tmp_path):
    seen = [_same_or_both_fail(m.data) for m in mutants(bases(tmp_path, 15), 1000, seed=16)]
    assert seen.count("same") >= 400

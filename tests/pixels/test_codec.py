"""The pixel codec layer: decode every syntax pydicom can, blank boxes, re-encode losslessly.

Every case goes all the way to bytes and back: decode, redact, encode_into, save_as with
enforce_file_format, re-read, decode again; outside the boxes must be bit-identical to the
first decode, inside must be the fill, and dciodvfy must find no error the input lacked.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom import uid as U
from pydicom.dataset import Dataset, FileDataset
from pydicom.encaps import encapsulate, generate_fragmented_frames
from pydicom.pixels import compress

from phiscrub.errors import UnsupportedInput
from phiscrub.pixels import codec as P
from phiscrub.pixels.boxes import Box

from ..conftest import TEST_FILES

DCIODVFY = shutil.which("dciodvfy")
EVRLE, EVRBE, IVRLE = U.ExplicitVRLittleEndian, U.ExplicitVRBigEndian, U.ImplicitVRLittleEndian

# name: (transfer syntax written, photometric interpretation written)
BUNDLED = {
    "CT_small.dcm": (EVRLE, "MONOCHROME2"),
    "MR_small.dcm": (EVRLE, "MONOCHROME2"),
    "MR_small_implicit.dcm": (IVRLE, "MONOCHROME2"),
    "MR_small_bigendian.dcm": (EVRBE, "MONOCHROME2"),
    "ExplVR_BigEnd.dcm": (EVRBE, "RGB"),
    "liver_1frame.dcm": (EVRLE, "MONOCHROME2"),  # 1 bit allocated
    "liver_expb_1frame.dcm": (EVRBE, "MONOCHROME2"),
    "image_dfl.dcm": (U.DeflatedExplicitVRLittleEndian, "MONOCHROME2"),
    "MR_small_RLE.dcm": (U.RLELossless, "MONOCHROME2"),
    "SC_rgb_rle_2frame.dcm": (U.RLELossless, "RGB"),
    "SC_rgb_rle_16bit_2frame.dcm": (U.RLELossless, "RGB"),
    "SC_rgb_rle_32bit_2frame.dcm": (EVRLE, "RGB"),  # pydicom's RLE profile stops at 16 bits
    "rtdose.dcm": (IVRLE, "MONOCHROME2"),  # 15 frames, 32-bit
    "rtdose_rle.dcm": (EVRLE, "MONOCHROME2"),
    "MR_small_jpeg_ls_lossless.dcm": (U.JPEGLSLossless, "MONOCHROME2"),
    "MR_small_jp2klossless.dcm": (U.JPEG2000Lossless, "MONOCHROME2"),
    "J2K_pixelrep_mismatch.dcm": (U.JPEG2000Lossless, "MONOCHROME2"),
    "GDCMJ2K_TextGBR.dcm": (U.JPEG2000Lossless, "YBR_RCT"),
    "SC_rgb_jpeg_gdcm.dcm": (U.JPEGLosslessSV1, "RGB"),  # JPEG lossless SV1, via GDCM
    "JPEG2000.dcm": (U.JPEGLSLossless, "MONOCHROME2"),  # lossy J2K, signed 16-bit
    "693_J2KI.dcm": (U.JPEGLSLossless, "MONOCHROME2"),  # lossy J2K, signed 14-bit
    "JPGExtended.dcm": (U.JPEGLSLossless, "MONOCHROME2"),  # lossy 12-bit JPEG
    "JPEGLSNearLossless_16.dcm": (U.JPEGLSLossless, "MONOCHROME2"),
    "SC_rgb_jls_lossy_line.dcm": (U.JPEGLSLossless, "RGB"),
    "SC_rgb_jpeg_lossy_gdcm.dcm": (U.JPEGLSLossless, "RGB"),  # YBR_FULL baseline -> RGB
    "SC_rgb_dcmtk_+eb+cy+s2.dcm": (U.JPEGLSLossless, "RGB"),  # YBR_FULL_422 baseline -> RGB
    "examples_ybr_color.dcm": (U.JPEGLSLossless, "RGB"),  # 30-frame YBR_FULL_422 baseline
    "SC_rgb_small_odd_jpeg.dcm": (U.RLELossless, "RGB"),  # 3x3: CharLS and openjpeg refuse it
    "SC_ybr_full_422_uncompressed.dcm": (EVRLE, "YBR_FULL"),  # chroma expanded, not averaged
    "examples_palette.dcm": (EVRLE, "PALETTE COLOR"),
}


def _errors(path: Path) -> set[str]:
    """dciodvfy's error lines, with UIDs and values masked (as tests/test_dciodvfy.py does)."""
    res = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, timeout=60)
    out = set()
    for ln in (res.stdout + res.stderr).splitlines():
        if ln.startswith("Error"):
            ln = re.sub(r"\b\d+(\.\d+){2,}\b", "<uid>", ln)
            ln = re.sub(r'"[^"]*"', '"<value>"', ln)
            out.add(ln.strip())
    return out


def _boxes(frames: np.ndarray) -> list[Box]:
    _, rows, cols = frames.shape[:3]
    return [Box(1, 1, max(1, cols // 4), max(1, rows // 5)), Box(cols // 2, rows // 2, cols, rows, frame=0)]


def _mask(shape: tuple[int, ...], boxes: list[Box]) -> np.ndarray:
    mask = np.zeros(shape[:3], dtype=bool)
    for b in boxes:
        x0, y0, x1, y1 = max(0, b.x), max(0, b.y), min(shape[2], b.x + b.w), min(shape[1], b.y + b.h)
        mask[slice(None) if b.frame is None else b.frame, y0:y1, x0:x1] = True
    return mask


def _save(ds: Dataset) -> bytes:
    for _ in ds.iterall():  # some test files are implicit VR inside an explicit syntax; give each element its VR
        pass
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _cycle(src_bytes: bytes, tmp_path: Path, fill: int | str) -> tuple[str, Dataset, Dataset]:
    """The full round trip plus every check that applies to any source."""
    source = dcmread(io.BytesIO(src_bytes))
    ds = dcmread(io.BytesIO(src_bytes))
    src_ts = source.file_meta.TransferSyntaxUID
    original = P.decode_frames(ds)
    layout = P.decoded_layout(ds)
    assert original.shape == layout.shape and original.ndim in (3, 4)
    boxes = _boxes(original)
    redacted = P.redact(original, boxes, fill, photometric=layout.photometric)
    written = P.encode_into(ds, redacted)
    out = dcmread(io.BytesIO(_save(ds)))
    assert out.file_meta.TransferSyntaxUID == written
    assert written not in P.LOSSY_SYNTAXES

    again = P.decode_frames(out)
    mask = _mask(original.shape, boxes)
    assert mask.any() and (~mask).any()
    assert np.array_equal(again[~mask], original[~mask]), "a pixel outside the boxes changed"
    fill_px = redacted[mask][0]
    assert np.all(again[mask] == fill_px), "a pixel inside a box is not the fill"
    assert P.round_trip_equal(original, out, boxes, fill)

    was_lossy = src_ts in P.LOSSY_SYNTAXES or source.get("LossyImageCompression") == "01"
    assert out.get("LossyImageCompression") == ("01" if was_lossy else source.get("LossyImageCompression"))
    for kw in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if kw in source:
            assert out[kw].value == source[kw].value  # earlier history kept, nothing added for the re-encode
    assert out.get("SOPInstanceUID") == source.get("SOPInstanceUID")
    assert (out.BitsAllocated, out.BitsStored, out.PixelRepresentation) == (
        source.BitsAllocated, source.BitsStored, source.PixelRepresentation)
    assert out.get("NumberOfFrames") == source.get("NumberOfFrames")
    if out.SamplesPerPixel > 1:
        assert out.PlanarConfiguration == 0
    if U.UID(written).is_encapsulated:  # one fragment per frame, Basic Offset Table filled
        frames = list(generate_fragmented_frames(out.PixelData, number_of_frames=len(original)))
        assert len(frames) == len(original) and all(len(f) == 1 for f in frames)
        assert int.from_bytes(out.PixelData[4:8], "little") == 4 * len(original)  # BOT item length
    if DCIODVFY:
        (tmp_path / "in.dcm").write_bytes(src_bytes)
        (tmp_path / "out.dcm").write_bytes(_save(out))
        new = _errors(tmp_path / "out.dcm") - _errors(tmp_path / "in.dcm")
        assert not new, sorted(new)
    return written, source, out


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_files_round_trip(name: str, tmp_path: Path) -> None:
    path = TEST_FILES / name
    if not path.exists():
        pytest.skip(f"{name} not bundled with this pydicom")
    want_ts, want_pi = BUNDLED[name]
    written, source, out = _cycle(path.read_bytes(), tmp_path, "max" if "rgb" in name.lower() else 0)
    assert written == want_ts
    assert out.PhotometricInterpretation == want_pi
    if source.file_meta.TransferSyntaxUID not in P.LOSSY_SYNTAXES and written == source.file_meta.TransferSyntaxUID:
        assert source.PhotometricInterpretation in (want_pi, "YBR_FULL_422")  # lossless: same colour space


# ----------------------------------------------------------------------------- synthetic multi-frame sources


def _synthetic(ts: str, frames: int = 6, rows: int = 48, cols: int = 40, bits_stored: int = 12) -> bytes:
    """A signed multi-frame MONOCHROME2 image in the given syntax (pydicom bundles no
    multi-frame 16-bit file for most lossless syntaxes)."""
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    rng = np.random.default_rng(7)
    lo, hi = -(1 << (bits_stored - 1)), (1 << (bits_stored - 1)) - 1
    yy, xx = np.mgrid[0:rows, 0:cols]
    arr = np.stack([(yy * 40 - xx * 30 + rng.integers(-50, 50, (rows, cols)) + i).clip(lo, hi) for i in range(frames)]).astype("<i2")
    for kw in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if kw in ds:
            del ds[kw]
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT: multi-frame
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelData = arr.tobytes()
    ds["PixelData"].VR = "OW"
    ds.file_meta.TransferSyntaxUID = EVRLE
    if ts in (U.JPEGLossless, U.JPEGLosslessSV1):
        layout = P.PixelLayout(frames, rows, cols, 1, 16, bits_stored, True, "MONOCHROME2")
        ds.PixelData = encapsulate(P._gdcm_encode(arr, layout, ts, "MONOCHROME2"))
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
        ds.file_meta.TransferSyntaxUID = ts
    elif U.UID(ts).is_compressed:
        compress(ds, ts, arr, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "ts",
    [EVRLE, IVRLE, U.DeflatedExplicitVRLittleEndian, U.RLELossless, U.JPEGLSLossless, U.JPEG2000Lossless,
     U.JPEGLossless, U.JPEGLosslessSV1],
    ids=lambda t: U.UID(t).keyword,
)
@pytest.mark.parametrize("fill", [0, "min", "max", -1000])
def test_multiframe_lossless_sources_keep_their_syntax(ts: str, fill: int | str, tmp_path: Path) -> None:
    written, _, out = _cycle(_synthetic(ts), tmp_path, fill)
    assert written == ts
    assert "LossyImageCompression" not in out


def test_lossless_ybr_full_stays_ybr_with_neutral_chroma(tmp_path: Path) -> None:
    ds = dcmread(TEST_FILES / "SC_ybr_full_422_uncompressed.dcm")
    ybr = P.decode_frames(ds)[0]
    assert P.decoded_layout(ds).photometric == "YBR_FULL"
    ds.PhotometricInterpretation = "YBR_FULL"
    compress(ds, U.RLELossless, ybr, generate_instance_uid=False)
    written, _, out = _cycle(_save(ds), tmp_path, "min")
    assert (written, out.PhotometricInterpretation) == (U.RLELossless, "YBR_FULL")
    box = P.decode_frames(out)[0, 1, 1]
    assert box[1] == box[2] == 128  # grey box, not a coloured one


# ----------------------------------------------------------------------------- redact


def test_redact_copies_clips_and_targets_frames() -> None:
    frames = np.arange(3 * 6 * 5, dtype=np.int16).reshape(3, 6, 5) - 40
    before = frames.copy()
    out = P.redact(frames, [Box(-2, -2, 4, 3), Box(3, 4, 99, 99, frame=2), Box(0, 0, 0, 5)], "min")
    assert np.array_equal(frames, before) and out is not frames
    assert np.all(out[:, 0:1, 0:2] == -40)
    assert np.all(out[2, 4:, 3:] == -40) and np.array_equal(out[1, 4:, 3:], frames[1, 4:, 3:])
    mask = _mask(frames.shape, [Box(0, 0, 2, 1), Box(3, 4, 2, 2, frame=2)])
    assert np.array_equal(out[~mask], frames[~mask])


def test_redact_fill_rules() -> None:
    rgb = np.full((2, 4, 4, 3), 7, dtype=np.uint8)
    rgb[0, 0, 0] = (200, 9, 250)
    assert np.all(P.redact(rgb, [Box(1, 1, 2, 2)], "max")[:, 1:3, 1:3] == 250)  # every sample
    ybr = P.redact(rgb, [Box(1, 1, 2, 2)], "min", photometric="YBR_FULL")
    assert np.all(ybr[:, 1:3, 1:3] == (7, 128, 128))
    assert np.all(P.redact(rgb, [Box(1, 1, 2, 2)], "max", photometric="YBR_FULL")[:, 1:3, 1:3] == (200, 128, 128))
    signed = np.array([[[-5, 3], [1, 2]]], dtype=np.int16)
    assert P.redact(signed, [Box(1, 0, 1, 1)], "min")[0, 0, 1] == -5
    for bad in ("black", 1.5, True, 70000):
        with pytest.raises(ValueError):
            P.redact(signed, [Box(0, 0, 1, 1)], bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        P.redact(rgb, [Box(0, 0, 1, 1)], -1)  # does not fit uint8
    with pytest.raises(ValueError):
        P.redact(signed, [Box(0, 0, 1, 1, frame=1)], 0)  # no such frame


# ----------------------------------------------------------------------------- errors


def test_fill_outside_bits_stored_is_refused() -> None:
    ds = dcmread(io.BytesIO(_synthetic(U.RLELossless, frames=2)))
    frames = P.redact(P.decode_frames(ds), [Box(0, 0, 4, 4)], 5000)  # 12 bits stored: max 2047
    with pytest.raises(UnsupportedInput, match="Bits Stored"):
        P.encode_into(ds, frames)
    with pytest.raises(ValueError, match="shape"):
        P.encode_into(ds, frames[:1])
    assert ds.file_meta.TransferSyntaxUID == U.RLELossless  # untouched on failure


def test_unsupported_syntax_is_typed_and_phi_free() -> None:
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "Secret^Person"
    ds.file_meta.TransferSyntaxUID = U.MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    with pytest.raises(UnsupportedInput, match="unsupported transfer syntax MPEG2") as info:
        P.decode_frames(ds)
    assert "Secret" not in str(info.value)
    ds.file_meta.TransferSyntaxUID = "1.2.3.Secret^Person"
    with pytest.raises(UnsupportedInput) as info:
        P.decode_frames(ds)
    assert "Secret" not in str(info.value)


@pytest.mark.parametrize(("name", "reason"), [
    ("JPEG-lossy.dcm", "pixel data cannot be decoded (RuntimeError)"),
    ("MR_truncated.dcm", "pixel data cannot be decoded (ValueError)"),
    ("badVR.dcm", "NumberOfFrames is not an integer"),
])
def test_undecodable_pixel_data_is_typed(name: str, reason: str) -> None:
    if not (TEST_FILES / name).exists():
        pytest.skip(f"{name} not bundled")
    with pytest.raises(UnsupportedInput) as info:
        P.decode_frames(dcmread(TEST_FILES / name))
    assert str(info.value).endswith(reason)


def test_absurd_size_is_refused_before_decoding() -> None:
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 300
    with pytest.raises(UnsupportedInput, match="2 GiB"):
        P.decode_frames(ds)
    del ds.PixelData
    with pytest.raises(UnsupportedInput, match="no pixel data"):
        P.decode_frames(ds)
    bare = FileDataset("x", Dataset(), preamble=b"\x00" * 128)
    with pytest.raises(UnsupportedInput):
        P.decode_frames(bare)


def test_an_encoder_that_loses_bits_is_not_trusted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = P._pydicom_encode

    def corrupting(frames: np.ndarray, layout: P.PixelLayout, ts: str, pi: str) -> list[bytes]:
        bad = frames.copy()
        bad.flat[0] ^= 1
        return real(bad, layout, ts, pi)

    monkeypatch.setitem(P._ENCODERS, U.RLELossless, corrupting)
    written, _, _ = _cycle((TEST_FILES / "MR_small_RLE.dcm").read_bytes(), tmp_path, 0)
    assert written == U.JPEGLSLossless  # the next candidate, because RLE did not round-trip

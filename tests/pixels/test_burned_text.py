"""Real OCR on real pixels with text burned in: every character of the PHI is covered in
sensitive mode, allow-listed labels are not, and 'all' covers everything - for 16-bit CT
(window and full range), MONOCHROME1, a small MR, RGB and YBR ultrasound, and a cine
stack whose frame counter and clock change per frame."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space

from phiscrub.pixels.phi_match import DEFAULT_THRESHOLD, classify, terms_from_header
from phiscrub.pixels.views import detect_text

from ..conftest import TEST_FILES
from ._burn import burn, speckle, text_mask, touched, truetype_font, uncovered

PHI = {"name": "DAVIDSON^DOUGLAS", "id": "MRN4471923", "dob": "03/14/1952"}
LABELS = {"side": "L", "freq": "5.0 MHz"}


def _terms():
    ds = Dataset()
    ds.PatientName = "DAVIDSON^DOUGLAS"
    ds.PatientID = "MRN4471923"
    ds.PatientBirthDate = "19520314"
    ds.StudyTime = "101530"
    return terms_from_header(ds)


def _check(found, masks: dict[str, np.ndarray], phi: set[str], labels: set[str]) -> None:
    terms = _terms()
    sensitive = classify(found, terms, "sensitive", DEFAULT_THRESHOLD, None, [])
    for k in phi:
        assert uncovered(masks[k], sensitive) == 0, (k, [b.text for b in found])
    for k in labels:
        assert not touched(masks[k], sensitive), (k, [b.text for b in found])
    every = classify(found, terms, "all", DEFAULT_THRESHOLD, None, [])
    for k in phi | labels:
        assert uncovered(masks[k], every) == 0, (k, [b.text for b in found])


def _layout(shape: tuple[int, int], scale: float = 0.5) -> dict[str, np.ndarray]:
    h, w = shape
    org = {"name": (10, 24), "id": (10, 48), "dob": (w - 110, h - 12), "side": (w - 22, h // 2), "freq": (w - 80, 24)}
    return {k: text_mask(shape, (PHI | LABELS)[k], org[k], scale) for k in org}


def test_ct_16_bit_window_and_full_range(engine) -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    img = cv2.resize(ds.pixel_array, (512, 512), interpolation=cv2.INTER_NEAREST)
    masks = _layout(img.shape)
    # the ID over the vertebra: as white as the bone in the soft-tissue window, so only
    # the full-range view shows it
    masks["id"] = text_mask(img.shape, PHI["id"], (190, 150), 0.5)
    for m in masks.values():
        burn(img, m, 4095)
    found = detect_text(img, "MONOCHROME2", (40, 400), engine, ds=ds)
    _check(found, masks, set(PHI), set(LABELS))


def test_monochrome1(engine) -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    img = cv2.resize(ds.pixel_array, (512, 512), interpolation=cv2.INTER_NEAREST)
    img = (img.max() - img).astype(np.int16)  # MONOCHROME1: low values display white
    masks = _layout(img.shape)
    for m in masks.values():
        burn(img, m, 0)
    found = detect_text(img, "MONOCHROME1", None, engine)
    _check(found, masks, set(PHI), set(LABELS))


def test_small_mr_is_enlarged_for_detection(engine) -> None:
    ds = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    img = cv2.resize(ds.pixel_array, (256, 256), interpolation=cv2.INTER_NEAREST)
    masks = {"dob": text_mask(img.shape, PHI["dob"], (4, 14), 0.4), "side": text_mask(img.shape, "R", (240, 130), 0.4)}
    for m in masks.values():
        burn(img, m, int(img.max()))
    found = detect_text(img, "MONOCHROME2", (600, 1600), engine, ds=ds)
    _check(found, masks, {"dob"}, {"side"})


@pytest.fixture(scope="module")
def ultrasound() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    gray = speckle((480, 640), seed=1)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    cv2.ellipse(rgb, (330, 260), (60, 40), 0, 0, 360, (200, 30, 30), -1)  # a Doppler patch
    masks = _layout(gray.shape)
    masks["hr"] = text_mask(gray.shape, "HR 72", (10, 470), 0.5)
    for k, m in masks.items():
        burn(rgb, m, (255, 255, 0) if k == "freq" else (255, 255, 255))
    return rgb, masks


def test_rgb_ultrasound(engine, ultrasound) -> None:
    rgb, masks = ultrasound
    found = detect_text(rgb[None], "RGB", None, engine)
    _check(found, masks, set(PHI), set(LABELS) | {"hr"})


def test_ybr_full_ultrasound(engine, ultrasound) -> None:
    rgb, masks = ultrasound
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    found = detect_text(ybr, "YBR_FULL", None, engine)  # one color frame given as (H, W, 3)
    _check(found, masks, set(PHI), set(LABELS) | {"hr"})


def test_cine_with_changing_counter_and_clock(engine) -> None:
    n, shape = 12, (512, 512)
    frames = np.stack([speckle(shape, seed=2, shift=5 * k) for k in range(n)])
    fixed = _layout(shape)
    for m in fixed.values():
        frames[:, m] = 255
    counters, clocks = [], []
    for k in range(n):
        counters.append(text_mask(shape, f"{k + 1}/{n}", (420, 462), 0.5))
        clocks.append(text_mask(shape, f"10:15:{30 + k:02d}", (200, 500), 0.5))
        frames[k][counters[-1] | clocks[-1]] = 255
    found = detect_text(frames, "MONOCHROME2", None, engine)
    terms = _terms()
    sensitive = classify(found, terms, "sensitive", DEFAULT_THRESHOLD, None, [])
    every = classify(found, terms, "all", DEFAULT_THRESHOLD, None, [])
    assert all(b.frame is None for b in sensitive + every)  # one set of boxes for every frame
    for k in PHI:
        assert uncovered(fixed[k], sensitive) == 0, k
    for k in LABELS:
        assert not touched(fixed[k], sensitive), k
    for k in range(n):
        assert uncovered(clocks[k], sensitive) == 0, k  # a clock is PHI on every frame
        assert not touched(counters[k], sensitive), k  # a frame counter is not
        assert uncovered(counters[k], every) == 0, k


def test_truetype_text(engine) -> None:
    font_path = truetype_font()
    if font_path is None:
        pytest.skip("no DejaVu font installed")
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.fromarray(speckle((400, 600), seed=3))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.truetype(str(font_path), 14)
    draw.text((12, 8), "Patient: Davidson, Douglas", fill=255, font=font)
    draw.text((560, 200), "R", fill=255, font=font)
    img = np.asarray(canvas).copy()
    before = np.asarray(Image.fromarray(speckle((400, 600), seed=3)))
    ink = img != before
    name, side = ink.copy(), ink.copy()
    name[:, 400:] = False
    side[:, :400] = False
    found = detect_text(img, "MONOCHROME2", None, engine)
    _check(found, {"name": name, "side": side}, {"name"}, {"side"})


def _us_dataset(frames: np.ndarray) -> Dataset:
    """An 8-bit grey ultrasound (multi-frame when ``frames`` has more than one) whose
    header holds the planted PHI."""
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyTime = "DAVIDSON^DOUGLAS", "MRN4471923", "19520314", "101530"
    ds.Rows, ds.Columns, ds.NumberOfFrames = frames.shape[1], frames.shape[2], frames.shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = frames.tobytes()
    return ds


def _count_reads_over(mask: np.ndarray, monkeypatch) -> list[int]:
    """A list that grows by one each time the real recogniser reads a box over ``mask``."""
    from phiscrub.pixels.engines.rapid import RapidOcrEngine

    reads: list[int] = []
    real_read = RapidOcrEngine.read

    def counting_read(self, image, rects):
        reads.extend(1 for x, y, w, h in rects if mask[y:y + h, x:x + w].any())
        return real_read(self, image, rects)

    monkeypatch.setattr(RapidOcrEngine, "read", counting_read)
    return reads


def test_single_frame_recheck_does_not_reread_a_label_beside_a_fill(engine, monkeypatch) -> None:
    """A label just under a patient name: the detector's boxes for the two lines overlap.
    The label is read once. Its pixels are unchanged by the name's fill and it lies on
    another line, so the re-check need not read it again (it used to)."""
    from phiscrub.pixels.codec import decode_frames
    from phiscrub.pixels.redact import clean_pixels
    from phiscrub.pixels.views import detect_text
    from phiscrub.policy.pixels_config import PixelsConfig

    shape = (512, 512)
    img = speckle(shape, seed=5)
    name = text_mask(shape, PHI["name"], (250, 40), 0.7)
    label = text_mask(shape, "AP", (400, 66), 0.7)
    img[name | label] = 255
    found = detect_text(img, "MONOCHROME2", None, engine)
    over = [b for b in found if label[b.y:b.y + b.h, b.x:b.x + b.w].any()]
    over_name = [b for b in found if name[b.y:b.y + b.h, b.x:b.x + b.w].any()]
    assert over and over_name and all(
        min(a.y + a.h, b.y + b.h) > max(a.y, b.y) and min(a.x + a.w, b.x + b.w) > max(a.x, b.x)
        for a in over for b in over_name)  # the case in point: the two lines' boxes overlap
    ds = _us_dataset(img[None])
    reads_over_label = _count_reads_over(label, monkeypatch)
    out = clean_pixels(ds, PixelsConfig(text_redaction="sensitive"))
    assert out.performed and ds.BurnedInAnnotation == "NO"
    after = decode_frames(ds)[0]
    assert not (after[name] == 255).any() and (after[label] == 255).all()
    assert len(reads_over_label) == 1


def test_cine_through_clean_pixels_rereads_only_what_can_change(engine, monkeypatch) -> None:
    """The whole stage on a clip: name and clock are covered on every frame, a label stays.
    The re-check reads again what lies over moving pixels (a clock, anything over the
    sector), but not a label on the static border that the first pass already read."""
    from phiscrub.pixels.codec import decode_frames
    from phiscrub.pixels.redact import clean_pixels
    from phiscrub.policy.pixels_config import PixelsConfig

    n, shape = 10, (512, 512)
    frames = np.stack([speckle(shape, seed=3, shift=6 * k) for k in range(n)])
    fixed = _layout(shape)
    for m in fixed.values():
        frames[:, m] = 255
    clocks = [text_mask(shape, f"10:15:{30 + k:02d}", (200, 500), 0.5) for k in range(n)]
    for k in range(n):
        frames[k][clocks[k]] = 255
    ds = _us_dataset(frames)
    label = fixed["freq"]  # on the black border: the same pixels in every frame
    reads_over_label = _count_reads_over(label, monkeypatch)
    out = clean_pixels(ds, PixelsConfig(text_redaction="sensitive"))
    assert out.performed and ds.BurnedInAnnotation == "NO"
    after = decode_frames(ds)
    for k in range(n):
        for key in PHI:
            assert not (after[k][fixed[key]] == 255).any(), (key, k)
        assert not (after[k][clocks[k]] == 255).any(), k  # the clock of every frame
        assert (after[k][label] == 255).all()  # the label is kept
    assert len(reads_over_label) == 1  # read by the first pass; the re-check knew it

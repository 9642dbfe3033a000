"""Stored pixels to detector views and back: windows, photometric handling, projections,
enlarging, tiling and merging. A fake engine that 'reads' bright blocks keeps these
tests exact and fast; the real engine is exercised in test_burned_text."""

from __future__ import annotations

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.pixels import convert_color_space

from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.engines import Rect
from phiscrub.pixels.views import (
    OVERLAP,
    TILE,
    detect_text,
    detection_views,
    gray_views,
    merge_rects,
    projections,
    tiles,
)

from ..conftest import TEST_FILES


def _blocks(image: np.ndarray) -> list[Rect]:
    """Bright blobs, joined horizontally the way letters join into a line."""
    g = image if image.ndim == 2 else image.max(axis=2)
    bright = g > 200
    n, labels = cv2.connectedComponents(cv2.dilate(bright.astype(np.uint8), np.ones((1, 9), np.uint8)))
    out = []
    for i in range(1, n):
        ys, xs = np.nonzero(bright & (labels == i))
        out.append((int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)))
    return out


class BlockEngine:
    """Finds bright blocks; one stage (detect only) like a minimal third-party engine."""

    name = "blocks"

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def detect(self, image: np.ndarray) -> list[TextBox]:
        self.calls.append(image.shape[:2])
        return [TextBox(*r, f"{r[2]}x{r[3]}", 0.9) for r in _blocks(image)]


class TwoStageBlocks(BlockEngine):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[Rect] = []

    def locate(self, image: np.ndarray) -> list[Rect]:
        self.calls.append(image.shape[:2])
        return _blocks(image)

    def read(self, image: np.ndarray, rects: list[Rect]) -> list[tuple[str, float]]:
        self.reads += rects
        return [(f"{w}x{h}", 0.9) for _, _, w, h in rects]


def test_projections_min_max_and_samples() -> None:
    frames = np.stack([np.full((4, 4), v, np.uint16) for v in (5, 1, 9, 3, 7)])
    frames[2, 0, 0] = 0
    out = projections(frames)
    assert [int(p[1, 1]) for p in out] == [1, 9, 5, 9, 7]  # min, max, first, middle, last
    assert int(out[0][0, 0]) == 0
    # duplicates go: the middle frame is also the max here, and a static clip is one image
    assert len(out) == 5 and len(projections(np.repeat(frames[:1], 6, axis=0))) == 1
    assert len(projections(frames[:1])) == 1 and projections(frames[0])[0].shape == (4, 4)
    assert len(projections(frames[:, :, :3])) == 5  # (5, 4, 3) is five gray frames
    color = np.zeros((3, 8, 8, 3), np.uint8)
    color[1, 2, 2] = (255, 0, 0)
    assert [p.shape for p in projections(color)][0] == (8, 8, 3)


def test_gray_views_window_rescale_and_full_range() -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    img = ds.pixel_array
    views = dict(gray_views(img, "MONOCHROME2", (40, 400), ds))
    assert set(views) == {"window", "full"}
    # window 40/400 in HU with intercept -1024: stored 824..1224 spans the grey range
    stored = 1024 + 40
    probe = np.array([[stored - 200, stored, stored + 200]], dtype=img.dtype)
    w = dict(gray_views(np.concatenate([img[:1, :125], probe], axis=1), "MONOCHROME2", (40, 400), ds))["window"]
    assert w[0, -3] == 0 and 120 <= w[0, -2] <= 135 and w[0, -1] == 255
    # a window that clips nearly every value (meant for other units): percentiles instead
    assert [n for n, _ in gray_views(img + 2000, "MONOCHROME2", (40, 400), ds)][0] == "percentile"
    # MONOCHROME1 shows high values dark
    m1 = dict(gray_views(img, "MONOCHROME1", None, None))
    m2 = dict(gray_views(img, "MONOCHROME2", None, None))
    assert np.array_equal(m1["percentile"], 255 - m2["percentile"])
    u8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert [(n, v is u8) for n, v in gray_views(u8, "MONOCHROME2", (128, 256))] == [("stored", True)]


def test_color_views_ybr_and_palette() -> None:
    rgb = np.zeros((2, 40, 60, 3), np.uint8)
    rgb[:, 10:20, 10:50] = (250, 200, 20)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    a = detection_views(rgb, "RGB")
    b = detection_views(ybr, "YBR_FULL")
    assert len(a) == len(b) and a[0].image.shape == (40 * 4, 60 * 4, 3)  # small: enlarged 4x
    assert np.abs(a[0].image.astype(int) - b[0].image.astype(int)).max() <= 3
    ds = pydicom.dcmread(TEST_FILES / "examples_palette.dcm")
    pal = detection_views(ds.pixel_array, "PALETTE COLOR", None, ds=ds)
    assert pal[0].image.ndim == 3 and pal[0].image.dtype == np.uint8 and pal[0].scale == 1
    assert detection_views(ds.pixel_array, "PALETTE COLOR", None)[0].image.ndim == 2  # no LUT: indices as grey


def test_low_contrast_gets_a_stretched_view() -> None:
    img = np.full((400, 400), 30, np.uint8)
    img[100:110, 50:200] = 45
    names = [v.name for v in detection_views(img, "MONOCHROME2")]
    assert names == ["p0-stored", "p0-stored-stretch"]
    assert [v.name for v in detection_views(img, "MONOCHROME2", variants="none")] == ["p0-stored"]
    assert len(detection_views(img, "MONOCHROME2", variants="all")) == 4


def test_tiles_cover_with_overlap() -> None:
    h, w = 2600, 1300
    ts = tiles(h, w)
    cover = np.zeros((h, w), np.uint8)
    for y0, x0, y1, x1 in ts:
        assert y1 - y0 <= TILE and x1 - x0 <= TILE
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1
    ys = sorted({t[0] for t in ts})
    assert all(ys[i] + TILE - ys[i + 1] >= OVERLAP for i in range(len(ys) - 1))
    assert tiles(512, 512) == [(0, 0, 512, 512)]


def test_merge_keeps_lines_apart() -> None:
    line, dup, word = (10, 10, 200, 20), (12, 9, 196, 22), (120, 12, 60, 18)
    other_line = (10, 26, 200, 20)  # the next line, touching
    seam_a, seam_b = (900, 300, 140, 20), (1000, 301, 160, 19)
    two_lines = (5, 8, 210, 40)
    groups = merge_rects([line, dup, word, other_line, seam_a, seam_b, two_lines])
    rects = sorted(r for r, _ in groups)
    assert rects == [(5, 8, 210, 40), (10, 9, 200, 22), (10, 26, 200, 20), (900, 300, 260, 20)]


def test_tiled_detection_maps_back_and_merges_seams() -> None:
    img = np.zeros((2600, 1300), np.uint16)
    spots = {"corner": (5, 5, 120, 14), "seam": (900, 1230, 300, 14), "far": (1180, 2570, 110, 12)}
    for x, y, w, h in spots.values():
        img[y:y + h, x:x + w] = 4000
    eng = BlockEngine()
    found = detect_text(img, "MONOCHROME2", None, eng)
    assert all(max(s) <= TILE for s in eng.calls) and len(eng.calls) >= 6
    got = sorted((b.x, b.y, b.w, b.h) for b in found)
    assert got == sorted((x - 2, y - 2, w + 4, h + 4) for x, y, w, h in spots.values())  # grown 2 px


def test_small_images_are_enlarged_and_read_once_per_box() -> None:
    img = np.zeros((3, 100, 150), np.uint8)
    img[:, 20:26, 10:70] = 255  # a static 'line' on every frame
    img[1, 60:66, 30:90] = 255  # shown on one frame only: found through the max projection
    eng = TwoStageBlocks()
    found = detect_text(img, "MONOCHROME2", None, eng)
    assert sorted((b.x, b.y, b.w, b.h) for b in found) == [(8, 18, 64, 10), (28, 58, 64, 10)]
    assert all(s == (400, 600) for s in eng.calls)  # 4x, never shrunk
    assert len(eng.reads) == 2 and {b.text for b in found} == {"256x40"}  # read in the enlarged view
    assert {b.text for b in detect_text(img, "MONOCHROME2", None, eng, read=False)} == {""}


def test_tall_boxes_are_read_as_lines() -> None:
    img = np.zeros((600, 600), np.uint8)
    for y in (100, 200, 300, 400):
        img[y:y + 12, 50:250] = 255
    img[500:548, 300:500] = 255  # three lines the detector joined into one block
    eng = TwoStageBlocks()
    found = detect_text(img, "MONOCHROME2", None, eng)
    tall = next(b for b in found if b.h > 40)
    assert tall.text.count("x") == 4 and len(eng.reads) == 8


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "RGB"])
def test_empty_input(photometric: str) -> None:
    shape = (0, 10, 10, 3) if photometric == "RGB" else (0, 10, 10)
    assert detect_text(np.zeros(shape, np.uint8), photometric, None, BlockEngine()) == []


def _detected(views) -> list[str]:
    return [v.name for v in views if v.detect]


def test_balanced_detects_one_clahe_per_image_and_an_inverted_window() -> None:
    ds = pydicom.dcmread(TEST_FILES / "CT_small.dcm")
    views = detection_views(ds.pixel_array, "MONOCHROME2", (40, 400), ds=ds, variants="balanced")
    # the window and the full range are read from; only the CLAHE of the widest rendering
    # and the inverted window are handed to the detector
    assert sorted(_detected(views)) == ["p0-full-clahe", "p0-window-inv"]
    assert {v.name for v in views if not v.detect} == {"p0-window", "p0-full"}


def test_balanced_clip_reads_sampled_frames_and_detects_projections() -> None:
    frames = np.stack([np.full((400, 400), 20 + 10 * k, np.uint8) for k in range(5)])
    for k in range(5):
        frames[k, 50:60, 40 + 20 * k:140 + 20 * k] = 250
    views = detection_views(frames, "MONOCHROME2", variants="balanced")
    sampled = [v for v in views if v.frame]
    assert len(sampled) == 3 and not any(v.detect for v in sampled)  # first, middle, last: read only
    assert _detected(views) and all(not v.frame for v in views if v.detect)
    # looking at frames one by one (a re-check), every frame is detected on
    each = detection_views(frames[:3], "MONOCHROME2", variants="balanced", project=False)
    assert [v.name for v in each if v.detect][:3] == ["p0-stored", "p1-stored", "p2-stored"]
    assert not any(v.frame for v in each)


def test_clip_boxes_are_read_from_the_finder_then_the_frames() -> None:
    frames = np.zeros((5, 400, 400), np.uint8)
    frames[:, 40:52, 20:200] = 255  # static
    eng = TwoStageBlocks()
    found = detect_text(frames, "MONOCHROME2", None, eng)
    assert len(found) == 1 and len(eng.reads) == 1  # a good first reading is not repeated


class LowScoreBlocks(TwoStageBlocks):
    def read(self, image: np.ndarray, rects: list[Rect]) -> list[tuple[str, float]]:
        self.reads += rects
        return [("?", 0.1) for _ in rects]


def test_a_box_read_badly_is_read_at_most_max_reads_times() -> None:
    from phiscrub.pixels.views import MAX_READS

    frames = np.random.default_rng(1).integers(0, 100, (9, 400, 400), dtype=np.uint8)  # every view differs
    frames[:, 40:52, 20:200] = 255
    eng = LowScoreBlocks()
    found = detect_text(frames, "MONOCHROME2", None, eng, variants="auto")
    assert len(found) == 1
    assert len(detection_views(frames, "MONOCHROME2", variants="auto")) > MAX_READS  # five views found it
    assert len(eng.reads) == MAX_READS


def test_skip_read_leaves_known_boxes_unread() -> None:
    img = np.zeros((400, 400), np.uint8)
    img[40:52, 20:200] = 255
    img[300:312, 20:200] = 255
    eng = TwoStageBlocks()
    found = detect_text(img, "MONOCHROME2", None, eng, skip_read=lambda r: r[1] < 100)
    assert len(found) == 2 and len(eng.reads) == 1
    assert sorted((b.y < 100, b.text) for b in found) == [(False, "184x16"), (True, "")]


def test_rows_limit_detection_to_bands() -> None:
    img = np.zeros((512, 512), np.uint8)
    img[20:32, 20:200] = 255  # inside the first band
    img[250:262, 20:200] = 255  # in no band
    img[470:482, 300:480] = 255  # inside the second band
    eng = TwoStageBlocks()
    found = detect_text(img, "MONOCHROME2", None, eng, read=False, rows=[(0, 60), (440, 512)])
    assert sorted(b.y for b in found) == [18, 468]  # in image coordinates, grown 2 px
    assert sorted(eng.calls) == [(60, 512), (72, 512)]


def test_a_box_taller_than_a_line_is_read_as_strips_each_kept_with_its_reading() -> None:
    from phiscrub.pixels.views import TALL, View, _read_groups

    img = np.zeros((200, 300), np.uint8)
    eng = TwoStageBlocks()
    views = [View(img, 1, "plain")]
    tall, short = (10, 20, 200, 90), (10, 150, 120, 30)
    got = _read_groups(eng, views, [tall, short], [[0], [0]], line_h=30.0)
    assert 90 >= TALL * 30
    assert not got[1].lines  # one line: no strips
    strips = got[0].lines
    assert len(strips) == 3 and all(s.x == 10 and s.w == 200 and s.h < 90 for s in strips)
    assert strips[0].y == 20 and strips[-1].y + strips[-1].h == 110  # they span the box
    assert [s.text for s in strips] == [f"{s.w}x{s.h}" for s in strips]  # each with its own reading
    assert got[0].text == " ".join(s.text for s in strips)


def test_inverted_views_of_images_up_to_700_px_are_looked_at_twice_as_large() -> None:
    """JSL's 512-px CT slices carry 7-10 px dark text the detector misses at native size."""
    from phiscrub.pixels.views import DOUBLE_BELOW, _view_factor

    assert _view_factor("p0-window-inv", 512, 512) == 2 and _view_factor("p0-full-inv", 665, 512) == 2
    assert _view_factor("p0-window", 512, 512) == 1 and _view_factor("p0-full-clahe", 512, 512) == 1
    assert _view_factor("p0-window-inv", DOUBLE_BELOW, 512) == 1 and _view_factor("p0-window-inv", 800, 800) == 1
    assert _view_factor("p0-window", 256, 256) == 2 and _view_factor("p0-window-inv", 128, 128) == 4  # as before

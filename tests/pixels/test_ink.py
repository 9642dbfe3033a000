"""Ink geometry: text boxes shrunk to their line, the value behind a box, and the re-check's
test for text left outside our own fills. Text is drawn with a real TrueType font, so the
anti-aliased edges are what a scanner's annotation engine produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phiscrub.pixels import codec as P
from phiscrub.pixels.boxes import Box
from phiscrub.pixels.ink import (
    ROUGH_SHARE,
    background,
    brightness,
    end_share,
    ink_outside,
    rough_ends,
    shrink_to_contrast,
    text_like,
    tighten,
    touching,
)

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _draw(bg: np.ndarray, text: str, xy: tuple[int, int], value: int, size: int = 18) -> tuple[int, int, int, int]:
    """Burn text into bg (in place); returns the ink's (x0, y0, x1, y1)."""
    from PIL import Image, ImageDraw, ImageFont

    if not FONT.is_file():
        pytest.skip("fonts-dejavu not installed")
    mask = Image.new("L", (bg.shape[1], bg.shape[0]), 0)
    ImageDraw.Draw(mask).text(xy, text, fill=255, font=ImageFont.truetype(str(FONT), size))
    alpha = np.asarray(mask, dtype=np.float32) / 255.0
    bg[:] = np.rint(bg * (1 - alpha) + value * alpha).astype(bg.dtype)
    ys, xs = np.nonzero(alpha >= 0.25)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _patch_image() -> tuple[np.ndarray, tuple[int, int, int, int], Box]:
    """Dark text on a light label patch, on a noisy mid-grey 'anatomy' background: the
    case where the detector's box spans patch, patch edge and anatomy."""
    rng = np.random.default_rng(3)
    img = rng.normal(90, 25, (96, 256)).clip(0, 255).astype(np.uint8)
    img[30:58, 20:200] = 230  # the patch
    ink = _draw(img, "Smith^John 1961", (26, 33), 20)
    x0, y0, x1, y1 = ink
    detector = Box(x0 - 10, y0 - 12, (x1 - x0) + 20, (y1 - y0) + 24)  # inflated, like PP-OCR's unclip
    return img, ink, detector


def test_ink_boxes_hold_every_letter_and_drop_the_margin() -> None:
    img, (x0, y0, x1, y1), detector = _patch_image()
    got = tighten(brightness(img[None]), detector)
    assert got.y <= y0 and got.y + got.h >= y1, "a row of ink outside the box"
    assert got.x <= x0 and got.x + got.w >= x1, "a column of ink outside the box"
    assert got.h < detector.h - 10, "the rows of margin above and below the line were kept"


def test_line_boxes_hold_every_letter() -> None:
    img, (x0, y0, x1, y1), detector = _patch_image()
    got = shrink_to_contrast(brightness(img[None]), detector)
    assert got.x <= x0 and got.y <= y0 and got.x + got.w >= x1 and got.y + got.h >= y1


def test_a_flat_box_is_left_alone() -> None:
    flat = np.full((1, 40, 40), 7, dtype=np.uint16)
    b = Box(5, 5, 20, 20)
    assert tighten(brightness(flat), b) == b
    assert shrink_to_contrast(brightness(flat), b) == b


def test_background_is_the_patch_under_text_and_the_ring_median_over_noise() -> None:
    img, _, detector = _patch_image()
    frames = img[None]
    line = tighten(brightness(frames), detector)
    assert background(frames, line)[0, 0] == 230  # the label patch: the box vanishes into it
    rng = np.random.default_rng(5)
    noisy = rng.integers(0, 4000, (2, 64, 64), dtype=np.uint16)  # two frames, no common value
    got = background(noisy, Box(20, 20, 10, 10))
    assert got.shape == (2, 1)
    for i in range(2):
        ring = np.concatenate([noisy[i, 18:20, 18:32].ravel(), noisy[i, 30:32, 18:32].ravel(),
                               noisy[i, 20:30, 18:20].ravel(), noisy[i, 20:30, 30:32].ravel()])
        assert got[i, 0] == np.rint(np.median(ring))


def test_background_fill_changes_only_the_ink_on_a_patch() -> None:
    img, (x0, y0, x1, y1), detector = _patch_image()
    frames = img[None]
    line = tighten(brightness(frames), detector).padded(2, *img.shape)
    out = P.redact(frames, [line], "background")
    inside = np.zeros(img.shape, dtype=bool)
    inside[line.y:line.y + line.h, line.x:line.x + line.w] = True
    assert np.array_equal(out[0][~inside], img[~inside]), "a pixel outside the box changed"
    assert np.all(out[0][inside] == out[0][line.y, line.x]), "the box is not one opaque value"
    assert np.all(out[0, y0:y1, x0:x1] == 230)


def test_recheck_sees_text_beside_a_fill_but_not_the_fill_itself() -> None:
    img, _, detector = _patch_image()
    frames = img[None]
    line = tighten(brightness(frames), detector).padded(2, *img.shape)
    out = P.redact(frames, [line], "background")
    assert ink_outside(brightness(out), detector, [line]) < detector.h, "our own fill counted as text"
    _draw(out[0], "42", (line.x + line.w + 4, 33), 20)  # a remnant just right of the box
    wider = Box(detector.x, detector.y, detector.w + 40, detector.h)
    assert ink_outside(brightness(out), wider, [line]) >= detector.h


def test_single_frame_recheck_bands_hold_each_box_and_a_line_around_it() -> None:
    from phiscrub.pixels.redact import BAND_SHARE, _bands

    top, bottom = Box(10, 8, 120, 14, None, "phi-name"), Box(300, 480, 150, 20, None, "phi-id")
    bands = _bands([top, bottom], 512)
    assert bands == [(0, 38), (460, 512)]  # a line height (at least 16 rows) above and below
    near = Box(10, 40, 80, 12, None, "phi-date")  # close to the first band: joined to it
    assert _bands([top, near, bottom], 512) == [(0, 68), (460, 512)]
    # boxes all over the image: the re-check looks at all of it
    spread = [Box(0, y, 50, 20, None, "x") for y in range(0, 512, 60)]
    assert _bands(spread, 512) is None and BAND_SHARE < 1
    assert _bands([], 512) is None


def test_recheck_remnants_are_line_sized_and_text_reads_as_text() -> None:
    from phiscrub.pixels.boxes import TextBox
    from phiscrub.pixels.redact import _reads_as_text, _same_line

    line = Box(10, 100, 150, 20, None, "phi-name")
    assert _same_line(Box(150, 101, 60, 19, None, ""), line)  # the end of the line the fill missed
    tall = Box(3, 149, 47, 97, None, "all-text")  # a stack of lines blanked as one box
    region = Box(27, 110, 429, 219, None, "")  # the detector's box over a sector of anatomy
    assert not _same_line(region, tall)
    assert not _reads_as_text(TextBox(0, 0, 9, 9, "灣路", 0.0))  # speckle read as CJK glyphs
    assert not _reads_as_text(TextBox(0, 0, 9, 9, "浦江行", 0.1))
    assert _reads_as_text(TextBox(0, 0, 9, 9, "山田太郎", 0.9))
    assert _reads_as_text(TextBox(0, 0, 9, 9, "ID 12", 0.2)) and not _reads_as_text(TextBox(0, 0, 9, 9, "-:", 0.9))


def test_line_boxes_keep_faint_text_beside_a_bright_label() -> None:
    """A bright "MRN:" and a faint number on one line: the box keeps the number's columns
    (cut to the label's ink, it left the number legible, and the re-check missed it)."""
    img = np.zeros((60, 300), dtype=np.uint8)
    label = _draw(img, "MRN:", (12, 20), 255, 20)
    digits = _draw(img, "35044959", (70, 20), 40, 20)  # faint: 40 grey levels on black
    x0, y0 = label[0] - 8, min(label[1], digits[1]) - 10
    detector = Box(x0, y0, digits[2] + 8 - x0, max(label[3], digits[3]) + 10 - y0)
    got = shrink_to_contrast(brightness(img[None]), detector)
    assert got.x <= digits[0] and got.x + got.w >= digits[2]
    assert got.y <= digits[1] and got.y + got.h >= digits[3]


def test_line_boxes_keep_faint_text_above_a_bright_graphic() -> None:
    img = np.zeros((60, 300), dtype=np.uint8)
    digits = _draw(img, "35044959", (20, 12), 76, 20)  # faint text ...
    img[digits[3] - 2:digits[3] + 1, 10:250] = 255  # ... over a bright scale bar
    detector = Box(4, digits[1] - 8, 260, digits[3] - digits[1] + 16)
    got = shrink_to_contrast(brightness(img[None]), detector)
    assert got.y <= digits[1] and got.y + got.h >= digits[3]


def test_remnants_continue_a_redacted_line_not_an_earlier_remnant() -> None:
    """Over colour Doppler the detector stacks boxes 15 rows apart: each touches the one
    below. Only the first counts as what the name's fill left; the next one up is judged
    by reading, or the fill climbs the stack a round at a time."""
    from phiscrub.pixels.redact import REMNANT, _remnants

    name = Box(47, 241, 367, 36, None, "phi-name")
    first, second = Box(47, 228, 367, 36), Box(47, 213, 367, 36)
    assert [(b.y, b.reason) for b in _remnants([first], [name])] == [(228, REMNANT)]
    after_round_one = [name, Box(47, 228, 367, 36, None, REMNANT)]
    assert _remnants([second], after_round_one) == []
    # a line found and judged sensitive in a re-check round is a line like any other
    assert len(_remnants([second], [name, Box(47, 228, 367, 36, None, "phi-id")])) == 1


def test_commonest_value_is_numpys_row_mode_for_every_sample_type() -> None:
    """The packed-key count gives what np.unique(axis=0) gives (the commonest row, the
    lowest of equally common ones), for grey and colour, signed and unsigned."""
    from phiscrub.pixels.ink import _commonest

    rng = np.random.default_rng(4)
    for dtype in (np.uint8, np.uint16, np.int16, np.int32):
        for samples in (1, 3):
            for trial in range(60):
                hi = 4 if trial % 2 else 900
                lo = -hi if np.dtype(dtype).kind == "i" else 0
                px = rng.integers(lo, min(hi, np.iinfo(dtype).max), (int(rng.integers(1, 300)), samples)).astype(dtype)
                values, counts = np.unique(px, axis=0, return_counts=True)
                top = int(np.argmax(counts))
                for share in (0.0, 0.3):
                    got = _commonest(px, share)
                    if counts[top] >= share * len(px):
                        assert got is not None and got.dtype == px.dtype and np.array_equal(got, values[top])
                    else:
                        assert got is None


def test_ink_box_keeps_the_half_of_a_line_that_crosses_onto_speckle() -> None:
    """Faint text on the lower edge of an ultrasound sector: its upper half lies over
    speckle as bright as the text, so only the lower half shows as ink. The detector
    centred its box on the whole line: the rows must reach the line's top too."""
    rng = np.random.default_rng(5)
    img = np.zeros((80, 300), dtype=np.uint8)
    img[:38] = rng.normal(75, 30, (38, 300)).clip(0, 255).astype(np.uint8)  # the sector
    x0, y0, x1, y1 = _draw(img, "Acc: A47573236", (10, 28), 76, 24)
    assert y0 < 38 < y1  # the line crosses the sector's edge
    pad = round(0.4 * (y1 - y0))
    detector = Box(x0 - 6, y0 - pad, x1 - x0 + 12, y1 - y0 + 2 * pad)
    got = tighten(brightness(img[None]), detector)
    assert got.y <= y0 and got.y + got.h >= y1, (got, (y0, y1))


def test_a_widened_sensitive_box_is_still_known_as_sensitive() -> None:
    """The re-check skips reading text the first pass kept; a box judged sensitive must not
    count as kept because value completion widened it."""
    from phiscrub.pixels.boxes import TextBox
    from phiscrub.pixels.redact import _judged

    found = TextBox(113, 61, 250, 28, "Northgate Regional Medica", 0.99)
    widened = Box(113, 61, 300, 28, None, "phi-name")
    assert _judged(found, [widened])
    assert not _judged(TextBox(113, 95, 250, 28, "5.0 MHz", 0.99), [widened])  # the next line


def _line_onto_anatomy() -> tuple[np.ndarray, Box, tuple[int, int, int, int]]:
    """Grey text on black whose last letters run onto textured 'anatomy' (the seed-17 set's
    "Born 1934-01" over the rest of "-21"), and a detector box that stops where it fades."""
    rng = np.random.default_rng(11)
    img = np.zeros((60, 320), dtype=np.uint8)
    img[:, 170:] = rng.normal(110, 30, (60, 150)).clip(0, 255).astype(np.uint8)
    x0, y0, x1, y1 = _draw(img, "Born 1934-01-21", (10, 20), 120, 22)
    cut = 150  # the detector's box ends over black, a few letters short
    return img, Box(x0 - 4, y0 - 3, cut - (x0 - 4), y1 - y0 + 6), (x0, y0, x1, y1)


def test_a_line_ending_onto_anatomy_has_rough_ends_and_one_on_black_does_not() -> None:
    img, box, _ = _line_onto_anatomy()
    bright = brightness(img[None])
    assert rough_ends(bright, box)
    flat = np.zeros_like(img)
    _, fy0, fx1, fy1 = _draw(flat, "Born 1934-01-21", (10, 20), 120, 22)
    whole = Box(6, fy0 - 3, fx1 + 4 - 6, fy1 - fy0 + 6)
    assert end_share(brightness(flat[None]), whole) == 0.0
    assert not rough_ends(brightness(flat[None]), whole)


def test_text_of_another_box_beside_a_line_is_not_structure() -> None:
    """'all' mode blanks the neighbouring box anyway: its letters beside a line must not
    make the line's end count as rough (every such line would be read for nothing)."""
    img = np.zeros((60, 400), dtype=np.uint8)
    _, y0, x1, y1 = _draw(img, "DOB:", (10, 20), 200, 22)
    nx0, ny0, nx1, ny1 = _draw(img, "1961-02-03", (x1 + 8, 20), 200, 22)
    line = Box(6, y0 - 3, x1 + 3 - 6, y1 - y0 + 6)
    neighbour = Box(nx0 - 3, ny0 - 3, nx1 - nx0 + 6, ny1 - ny0 + 6)
    bright = brightness(img[None])
    assert end_share(bright, line) > ROUGH_SHARE  # the date's strokes sit within a line height
    covered = np.zeros(img.shape, dtype=bool)
    covered[neighbour.y:neighbour.y + neighbour.h, neighbour.x:neighbour.x + neighbour.w] = True
    assert not rough_ends(bright, line, covered)


def test_text_like_tells_strokes_from_anatomy_and_flat_regions() -> None:
    """Fail-closed blanking is judged on the image: a box over letters is text, a box
    over a smooth body edge or a flat region is not (the detector's stray boxes there are
    read as noise at low scores)."""
    img, _, detector = _patch_image()
    assert text_like(brightness(img[None]), detector)
    yy, xx = np.mgrid[0:96, 0:256]
    body = (60 + 120 / (1 + np.exp(-(xx - 128) / 6.0)) + 0.2 * yy).astype(np.uint16)  # a soft edge and a ramp
    assert not text_like(brightness(body[None]), Box(80, 20, 100, 40))
    flat = np.full((1, 96, 256), 300, dtype=np.uint16)
    assert not text_like(brightness(flat), Box(80, 20, 100, 40))
    dark = np.zeros((96, 256), dtype=np.uint16)
    _draw(dark, "1961", (100, 30), 900)
    assert text_like(brightness(dark[None]), Box(90, 24, 70, 34))


def test_touching_boxes_share_one_fill_over_noise() -> None:
    """Stacked lines over noisy anatomy: one level for the block, taken around the block,
    not one per line from rings running through the neighbouring lines' letters (a
    patchwork whose steps keep each line's outline)."""
    rng = np.random.default_rng(11)
    img = rng.normal(100, 30, (120, 240)).clip(0, 255).astype(np.uint8)
    lines = []
    for k, text in enumerate(("Smith^John", "1961-03-14", "MRN 4471923")):
        x0, y0, x1, y1 = _draw(img, text, (20, 20 + 22 * k), 250)
        lines.append(Box(x0 - 3, y0 - 3, x1 - x0 + 6, y1 - y0 + 6))
    assert touching(lines, 4) == [[0, 1, 2]]
    assert touching([lines[0], Box(200, 100, 10, 10)], 4) == [[0], [1]]
    out = P.redact(img[None], lines, "background")[0]
    values = {int(v) for b in lines for v in np.unique(out[b.y:b.y + b.h, b.x:b.x + b.w])}
    assert len(values) == 1, f"the block was filled with {len(values)} levels"
    inside = np.zeros(img.shape, dtype=bool)
    for b in lines:
        inside[b.y:b.y + b.h, b.x:b.x + b.w] = True
    assert np.array_equal(out[~inside], img[~inside])
    assert abs(int(values.pop()) - 100) < 15, "the fill is not the block's surroundings"


def test_a_box_on_black_keeps_black_beside_a_block_over_anatomy() -> None:
    """A short label on the black border next to a long line over anatomy: the border's box
    vanishes into the black (nothing there changes but the letters); the line, most of the
    block, takes the anatomy's level (one value for the block would have been either)."""
    rng = np.random.default_rng(5)
    img = rng.normal(120, 25, (80, 320)).clip(0, 255).astype(np.uint8)
    img[:, :101] = 0  # the black border
    left = _draw(img, "L", (88, 30), 255)
    right = _draw(img, "DOE JANE 1961-03-14", (102, 30), 255)
    boxes = [Box(left[0] - 2, left[1] - 2, left[2] - left[0] + 4, left[3] - left[1] + 4),
             Box(right[0] - 2, right[1] - 2, right[2] - right[0] + 4, right[3] - right[1] + 4)]
    assert touching(boxes, 4) == [[0, 1]]
    out = P.redact(img[None], boxes, "background")[0]
    a, b = boxes
    assert (out[a.y:a.y + a.h, a.x:a.x + a.w] == 0).all()
    assert abs(int(out[b.y, b.x]) - 120) < 20 and len(np.unique(out[b.y:b.y + b.h, b.x:b.x + b.w])) == 1

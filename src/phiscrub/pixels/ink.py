"""Where the ink of a detected text line is, in stored pixels, and what lies behind it.

Why: a detector's box is not the text. PP-OCR inflates every box by about 1.6x and draws
one box per line, so blanking the box as found destroys a band of image around each
line, and with it the non-identifying text beside it ("DOB:" before the date it labels,
"AP" next to a clock). Burned-in annotation is usually drawn on a flat patch or over
anatomy; both cases need the ink found without being fooled by the background.

How: text strokes are thin. A morphological top-hat (bright strokes) and black-hat (dark
strokes) with a kernel wider than a stroke but narrower than a line keeps the strokes and
drops what is wider: a flat label patch, the edge of that patch, smooth anatomy. The
rows and columns holding strong response are the ink box. OpenCV does the morphology;
the box logic is ours (no library turns a stroke map into a line box).
"""

from __future__ import annotations

import math

import numpy as np

from phiscrub.pixels.boxes import Box

INK_SHARE = 0.35  # a pixel is ink when its stroke response is this share of the box's strongest
WEAK_SHARE = 0.15  # ... and may extend a line sideways from this share (faint text over anatomy)
ROW_SHARE = 0.08  # a row belongs to the line when it holds this share of the busiest row's ink
MIN_CONTRAST = 4.0  # grey levels (8-bit scale) below which the box holds no readable ink
# 'line' boxes keep the rows differing from the border by this share of the strongest
# difference. Not more: faint text (76 grey levels on black) under a bright graphic
# (255) in the same box fell below 0.3 and its top rows were left uncovered.
LINE_SHARE = 0.15

Bright = tuple[np.ndarray, np.ndarray]


def brightness(frames: np.ndarray, photometric: str = "MONOCHROME2", ds=None) -> Bright:
    """The darkest and brightest brightness each pixel takes over the frames, float32:
    text that changes between frames is whole in one or the other. Luma for YBR, channel
    mean for RGB, the palette's colours for PALETTE COLOR (index order is not brightness
    order), stored values for grey. ``frames`` is (N, H, W[, C])."""
    photometric = (photometric or "").upper()
    imgs = [frames.min(axis=0)] + ([frames.max(axis=0)] if frames.shape[0] > 1 else [])
    out = []
    for img in imgs:
        if photometric == "PALETTE COLOR" and ds is not None:
            from pydicom.pixels import apply_color_lut

            img = apply_color_lut(img[..., 0] if img.ndim == 3 else img, ds)
        g = img.astype(np.float32)
        if g.ndim == 3:
            g = g[..., 0] if photometric.startswith("YBR") else g.mean(axis=-1)
        out.append(g)
    return out[0], out[-1]


def _hats(img: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (k, k))
    top = cv2.morphologyEx(img, cv2.MORPH_TOPHAT, kernel, borderType=cv2.BORDER_REPLICATE)
    black = cv2.morphologyEx(img, cv2.MORPH_BLACKHAT, kernel, borderType=cv2.BORDER_REPLICATE)
    return top, black


def _runs(mask: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """[start, stop) runs of True, joining runs separated by at most ``gap`` False."""
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    stops = np.concatenate([idx[breaks] + 1, [idx[-1] + 1]])
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def _glyphs(ink: np.ndarray, line_h: int) -> tuple[np.ndarray, int]:
    """The ink with background structure removed, and how many glyph-sized strokes it has.

    Removed: connected strokes that touch the box's edge and are taller than a line or
    longer than a glyph (the edge of a label patch, the dark gap between two patches,
    anatomy running through the margin). The detector leaves a margin around every
    line, so text does not reach the edge; a small stroke that does (a box a pixel short
    of a letter) is kept."""
    import cv2

    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    h, w = ink.shape
    keep = np.zeros(count, dtype=bool)
    glyphs = 0
    for i in range(1, count):
        x, y, cw, ch = (int(v) for v in stats[i, :4])
        touches = x == 0 or y == 0 or x + cw == w or y + ch == h
        keep[i] = not (touches and (ch >= 0.9 * h or cw >= 1.5 * line_h))
        glyphs += int(keep[i] and ch >= 0.15 * h and cw <= 1.5 * line_h and stats[i, 4] >= 3)
    return keep[labels], glyphs


def _response(bright: Bright, b: Box) -> list[np.ndarray] | None:
    """Stroke response inside ``b``, one map per polarity (bright text, dark text), on an
    8-bit scale; None when the box is flat."""
    lo = bright[0][b.y:b.y + b.h, b.x:b.x + b.w]
    hi = bright[1][b.y:b.y + b.h, b.x:b.x + b.w]
    if lo.size == 0 or b.w < 4 or b.h < 4:
        return None
    vmin, vmax = float(lo.min()), float(hi.max())
    if vmax <= vmin:
        return None
    scale = 255.0 / (vmax - vmin)
    # kernel: wider than any stroke, narrower than the line (and than a label patch)
    k = max(3, (min(b.h, b.w) // 3) | 1)
    t1, b1 = _hats(np.ascontiguousarray((lo - vmin) * scale), k)
    if bright[1] is bright[0]:
        return [t1, b1]
    t2, b2 = _hats(np.ascontiguousarray((hi - vmin) * scale), k)
    return [np.maximum(t1, t2), np.maximum(b1, b2)]


def ink_mask(bright: Bright, b: Box) -> tuple[np.ndarray, np.ndarray] | None:
    """(strong, faint) boolean (h, w) maps of the ink inside ``b``, or None when the box
    holds too little contrast to say.

    Polarity: dark text on a light patch makes the patch between strokes look like thin
    bright bars, so both hats respond. The text's side is the one whose strokes come as
    more glyph-sized pieces; a tie (a lone letter) keeps both."""
    resp = _response(bright, b)
    if resp is None:
        return None
    picked: list[tuple[int, np.ndarray, np.ndarray]] = []
    for r in resp:
        peak = float(r.max())
        if peak < MIN_CONTRAST:
            continue
        # the strongest response may be background structure (the bright edge of the
        # next label patch): measure the peak on what is left once that is set aside,
        # or faint text beside it falls under the threshold
        kept, _ = _glyphs(r >= WEAK_SHARE * peak, b.h)
        faint = kept
        if kept.any():
            text_peak = max(MIN_CONTRAST, float(r[kept].max()))
            if text_peak != peak:  # the faint map moves with the peak; unchanged, it is `kept`
                peak = text_peak
                faint, _ = _glyphs(r >= WEAK_SHARE * peak, b.h)
        strong, glyphs = _glyphs(r >= INK_SHARE * peak, b.h)
        picked.append((glyphs, strong, faint | strong))
    if not picked:
        return None
    best = max(g for g, _, _ in picked)
    chosen = [(s, f) for g, s, f in picked if g == best]
    return np.logical_or.reduce([s for s, _ in chosen]), np.logical_or.reduce([f for _, f in chosen])


def text_like(bright: Bright, b: Box) -> bool:
    """Whether ``b`` holds ink shaped like text: enough contrast, and at least two
    glyph-sized strokes on one side (bright or dark) once the background structure that
    reaches the box's edge is set aside. Judged on the image, not on what a recogniser
    read, so that a box the detector drew over smooth anatomy or a flat region (the
    recogniser reads it as noise, at a low score) is not blanked as 'unreadable' text."""
    resp = _response(bright, b)
    if resp is None:
        return False
    for r in resp:
        peak = float(r.max())
        if peak >= MIN_CONTRAST and _glyphs(r >= INK_SHARE * peak, b.h)[1] >= 2:
            return True
    return False


# Stroke response within a line height beyond a line's end, as a share of the line's own
# near that end, from which the end counts as running onto structure. On the seed-17/19
# sets the four lines the detector cut short scored 0.59-1.12; about one line in five
# scores 0.4 or more, three in four under 0.25.
ROUGH_SHARE = 0.4


def rough_ends(bright: Bright, b: Box, covered: np.ndarray | None = None) -> bool:
    """Whether either end of line ``b`` runs onto structure (anatomy, texture) rather than
    flat background, within a line height of it.

    Why: faint text running onto anatomy is where the detector stops short of a line's
    last (or first) letters; over flat background it does not. 'all' mode reads only the
    lines this says True for, to learn from their text whether they stop inside a value
    (:mod:`phiscrub.pixels.truncated`). ``covered``: (rows, cols) True where other boxes
    will be blanked anyway; their text beside the line is not what is looked for."""
    return end_share(bright, b, covered) >= ROUGH_SHARE


def end_share(bright: Bright, b: Box, covered: np.ndarray | None = None) -> float:
    """The strongest stroke response within a line height beyond either end of ``b``,
    outside ``covered``, as a share of the strongest within a line height inside that end
    (per polarity; 0.0 for a flat or edge-to-edge line). ``covered`` is read only beyond
    the line's own columns."""
    reach = max(4, b.h)
    x0, x1 = max(0, b.x - reach), min(bright[0].shape[1], b.x + b.w + reach)
    if x0 == b.x and x1 == b.x + b.w:
        return 0.0
    resp = _response(bright, Box(x0, b.y, x1 - x0, b.h, b.frame, b.reason))
    if resp is None:
        return 0.0
    best = 0.0
    open_ = np.ones(resp[0].shape, dtype=bool)
    if covered is not None:
        open_ &= ~covered[b.y:b.y + b.h, x0:x1]
    left, right = b.x - x0, b.x + b.w - x0
    # each end against the line's own last letters there (a line can fade along its length)
    for zone, end in ((slice(0, left), slice(left, min(right, left + reach))),
                      (slice(right, x1 - x0), slice(max(left, right - reach), right))):
        for r in resp:
            own = float(r[:, end].max(initial=0.0))
            if own < MIN_CONTRAST:
                continue
            best = max(best, float(r[:, zone][open_[:, zone]].max(initial=0.0)) / own)
    return best


def shrink_to_contrast(bright: Bright, b: Box) -> Box:
    """'line' boxes (pixels.boxes: line): the box's rows shrunk to those holding
    whatever differs from its border (the background) by a good part of the strongest
    difference. A label patch or anatomy in the margin counts as ink, so boxes stay about
    line-and-margin sized; :func:`tighten` ('ink' boxes) is tighter."""
    ink = np.zeros(bright[0][b.y:b.y + b.h, b.x:b.x + b.w].shape, dtype=bool)
    if ink.size == 0 or b.w < 4 or b.h < 4:
        return b
    for img in bright[:1] if bright[1] is bright[0] else bright:  # one frame: one image
        region = img[b.y:b.y + b.h, b.x:b.x + b.w]
        border = np.concatenate([region[0], region[-1], region[:, 0], region[:, -1]])
        diff = np.abs(region - np.median(border))
        peak = float(diff.max())
        if peak > 0:
            ink |= diff > LINE_SHARE * peak
    ys = np.flatnonzero(ink.any(axis=1))
    if ys.size == 0:
        return b
    # Rows only: the columns stay the detector's. A line can mix contrasts (a bright
    # "MRN:" label before a faint number): cut to the strong ink, its columns dropped the
    # faint digits beside the label, which the re-check's single view did not see either.
    y0, y1 = int(ys.min()), int(ys.max()) + 1
    return Box(b.x, b.y + y0, b.w, y1 - y0, b.frame, b.reason)


def tighten(bright: Bright, b: Box) -> Box:
    """'ink' boxes (the default): the box's rows shrunk to the ink of the line it holds, its
    columns left as the detector drew them; ``b`` itself when unsure.

    Rows: those with a fair share of the busiest row's ink, in runs crossing the middle of
    the box (the detector centres its box on the line), then out over touching rows with
    any ink (descenders, accents). Columns: the strong ink in those rows, extended
    sideways through fainter ink (the end of a faint line over anatomy). A result far
    shorter than a line (under a quarter of the box) means the strongest strokes were
    not the text: keep the whole box.
    """
    masks = ink_mask(bright, b)
    if masks is None:
        return b
    ink, faint = masks
    counts = ink.sum(axis=1)
    if not counts.any():
        return b
    rows = _runs(counts >= max(1.0, ROW_SHARE * float(counts.max())), 1)
    mid0, mid1 = b.h // 4, b.h - b.h // 4
    line = [(s, e) for s, e in rows if s < mid1 and e > mid0] or rows
    y0, y1 = min(s for s, _ in line), max(e for _, e in line)
    reach = max(2, round(0.45 * (y1 - y0)))  # descenders and accents, not the next line
    top, bottom = max(0, y0 - reach), min(b.h, y1 + reach)
    sparse = faint.sum(axis=1)  # the faint ink: a descender's anti-aliased tip
    while y0 > top and sparse[y0 - 1]:
        y0 -= 1
    while y1 < bottom and sparse[y1]:
        y1 += 1
    if y1 - y0 < max(2, b.h // 4):
        return b
    # The detector centres its box on the line: ink found off-centre is part of the line
    # (text crossing from black onto speckle keeps only its half over black as ink). The
    # rows reach as far on the other side of the box's middle (seed-13 set: the tops of a
    # faint ID over a Doppler sector's lower edge were left).
    middle = b.h / 2
    half = max(middle - y0, y1 - middle)
    y0, y1 = max(0, min(y0, math.floor(middle - half))), min(b.h, max(y1, math.ceil(middle + half)))
    # Columns: the detector's own extent. Cutting the ends of a line to its ink lost the
    # faint edge of a first or last letter too often (measured on bench/pixel_set.py: 5 of
    # 205 fields left partly legible); the rows are where the detector's box is loose.
    x0, x1 = 0, b.w
    # and below the ink found, room for a faint descender (a quarter of the line)
    y0, y1 = max(0, y0 - 1), min(b.h, y1 + max(1, round(0.25 * (y1 - y0))))
    return Box(b.x + x0, b.y + y0, x1 - x0, y1 - y0, b.frame, b.reason)


def _commonest(px: np.ndarray, share: float) -> np.ndarray | None:
    """The commonest value (row) of ``px`` (n, samples) if it makes up ``share`` of them;
    of equally common ones, the lowest (in sample order).

    Counted on one integer per pixel (its samples packed, first most significant, so the
    order is np.unique's row order): np.unique(axis=0) sorts rows as structured records,
    and a 30-frame clip's background fills took 1.2 s of sorting."""
    n, samples = px.shape
    if n == 0:
        return None
    bits = 8 * px.dtype.itemsize
    if px.dtype.kind not in "ui" or bits * samples > 63:
        values, counts = np.unique(px, axis=0, return_counts=True)
        top = int(np.argmax(counts))
        return values[top] if counts[top] >= share * n else None
    keys = np.zeros(n, dtype=np.int64)
    for k in range(samples):  # signed samples as their unsigned bit pattern: same order within a sign
        keys = (keys << bits) | px[:, k].astype(np.int64) - (np.iinfo(px.dtype).min if px.dtype.kind == "i" else 0)
    if samples == 1 and bits <= 16:
        low = int(keys.min())
        counts = np.bincount(keys - low)
        top = int(np.argmax(counts))
        hit = int(np.flatnonzero(keys == top + low)[0])
        return px[hit] if counts[top] >= share * n else None
    values, first, counts = np.unique(keys, return_index=True, return_counts=True)
    top = int(np.argmax(counts))
    return px[first[top]] if counts[top] >= share * n else None


def background(frames: np.ndarray, b: Box, ring: int = 2) -> np.ndarray:
    """The value behind a box, per frame (see :func:`region_background`). Shape (frames, samples)."""
    return region_background(frames, [b], ring)


def region_background(frames: np.ndarray, boxes: list[Box], ring: int = 2) -> np.ndarray:
    """The value behind a group of boxes that touch, per frame. Text on a label patch or on
    black leaves most of its boxes at one value: that value (the boxes then vanish into
    their patch). Else the commonest value of a ring ``ring`` pixels wide around the
    boxes' union, else the ring's median (text over anatomy). Shape (frames, samples).

    Why the union: the ring of one box of a text block runs through the next line's
    letters, so each line's fill took a different level (a patchwork of greys over
    noisy anatomy, JSL tune mammograms), and what the patchwork left at a line's edge
    still stood out from its neighbour's fill."""
    n, rows, cols = frames.shape[:3]
    x0, y0 = max(0, min(b.x for b in boxes) - ring), max(0, min(b.y for b in boxes) - ring)
    x1 = min(cols, max(b.x + b.w for b in boxes) + ring)
    y1 = min(rows, max(b.y + b.h for b in boxes) + ring)
    outer = frames[:, y0:y1, x0:x1]
    inner = np.zeros(outer.shape[1:3], dtype=bool)
    near = np.zeros(outer.shape[1:3], dtype=bool)
    for b in boxes:
        inner[max(0, b.y - y0):b.y - y0 + b.h, max(0, b.x - x0):b.x - x0 + b.w] = True
        near[max(0, b.y - ring - y0):b.y + b.h + ring - y0, max(0, b.x - ring - x0):b.x + b.w + ring - x0] = True
    around_mask = near & ~inner
    samples = frames.shape[3] if frames.ndim == 4 else 1
    out = np.zeros((n, samples), dtype=frames.dtype)
    for i in range(n):
        if i and np.array_equal(outer[i], outer[i - 1]):  # a static overlay: the same answer
            out[i] = out[i - 1]
            continue
        inside = outer[i][inner].reshape(-1, samples)
        around = outer[i][around_mask].reshape(-1, samples)
        value = _commonest(inside, 0.4)
        if value is None:
            value = _commonest(around, 0.3)
        if value is None:
            value = np.median(around if around.size else inside, axis=0).round().astype(frames.dtype)
        out[i] = value
    return out


def patch_value(frames: np.ndarray, b: Box) -> np.ndarray | None:
    """The value most of ``b`` holds in every frame (text on a label patch or on black), or
    None where some frame has none: then the box lies over anatomy. Shape (frames, samples)."""
    samples = frames.shape[3] if frames.ndim == 4 else 1
    inside = frames[:, b.y:b.y + b.h, b.x:b.x + b.w]
    out = np.zeros((frames.shape[0], samples), dtype=frames.dtype)
    for i in range(frames.shape[0]):
        if i and np.array_equal(inside[i], inside[i - 1]):
            out[i] = out[i - 1]
            continue
        value = _commonest(inside[i].reshape(-1, samples), 0.4)
        if value is None:
            return None
        out[i] = value
    return out


def touching(boxes: list[Box], reach: int) -> list[list[int]]:
    """Groups of indices of boxes (same frame) lying within ``reach`` pixels of each other,
    directly or through others; each group in list order, groups by their first box."""
    parent = list(range(len(boxes)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(boxes):
        for j in range(i):
            b = boxes[j]
            if a.frame == b.frame and a.x - reach < b.x + b.w and b.x - reach < a.x + a.w \
                    and a.y - reach < b.y + b.h and b.y - reach < a.y + a.h:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(len(boxes)):
        groups.setdefault(root(i), []).append(i)
    return [groups[k] for k in sorted(groups)]


def ink_outside(bright: Bright, t: Box, covered: list[Box], margin: int = 2) -> int:
    """Pixels of strong ink inside ``t`` that lie outside every ``covered`` box (grown by
    ``margin``): whether a box the detector finds on a redacted image holds text still,
    or only the edges of our own fills."""
    import cv2

    masks = ink_mask(bright, t)
    if masks is None:
        return 0
    ink = masks[0].copy()
    for c in covered:
        ax0, ay0 = max(0, c.x - margin - t.x), max(0, c.y - margin - t.y)
        ax1, ay1 = min(t.w, c.x + c.w + margin - t.x), min(t.h, c.y + c.h + margin - t.y)
        if ax1 > ax0 and ay1 > ay0:
            ink[ay0:ay1, ax0:ax1] = False
    # what a fill leaves of a label patch around it are strips one or two pixels thin, and
    # what lies at the edge of the detector's box is context (it centres boxes on text):
    # neither is text
    count, _, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8)
    total = 0
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i, :5])
        if h <= 2 or w <= 2 or x == 0 or y == 0 or x + w == t.w or y + h == t.h:
            continue
        total += area
    return total

"""Stored pixel values -> 8-bit pictures a text detector can read, and back to boxes.

Everything here exists for detection only: the images built are thrown away and never
written anywhere; redaction works on the stored values with the boxes this returns.

Why several views of one image. Burned-in text is drawn at whatever value the device
chose, so no single rendering shows all of it: a CT window shows text over soft tissue
but hides white text over (equally white) bone, the full range shows it but flattens
faint grey text; a cine clip's static text is clean in the temporal min projection, a
caption shown on a few frames only appears in the max; a clock that changes per frame
reads cleanly only in a single frame. Detection runs on each view, the boxes are mapped
back to stored-pixel coordinates and merged, and each merged box is read once.

Why never shrink. Annotation text is often 7-10 px tall; a detector fed a 2048 px image
at 1024 px loses it. Large views are tiled (with overlap so no line is lost at a seam),
small ones are enlarged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.engines import Rect, TextEngine, TwoStageEngine

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

TILE = 1024  # largest side handed to the detector (it never resizes up to this)
OVERLAP = 64  # tile overlap: longer than the width of most words at annotation sizes
ENLARGE_BELOW = 384  # images whose longest side is smaller are enlarged ...
ENLARGE_TO = 512  # ... by an integer factor to about this size (at most 4x)
# Images from ENLARGE_BELOW up to this side have their inverted view looked at twice as large.
# On JSL tune-patient 512x512 CTs (7-10 px lines printed across the anatomy, black text on a
# white body beside CT noise) the detector at native size found none of the lines; at 2x it
# found them. Doubling only the inverted view (where that text is light on dark) kept nearly
# all of the gain for less time than doubling every view (a quarter of the tune files, 'all'
# mode: PHI recall 0.718 native, 0.770 every view 2x at 0.77 s/image, 0.766 inverted view 2x
# at 0.56 s/image; CLAHE view 2x: 0.714). An 800-px radiograph stays as it is.
DOUBLE_BELOW = 700
LOW_CONTRAST = 96  # grey levels between the 0.1 and 99.9th percentile below which CLAHE helps
SAME_VIEW = 1.5  # mean absolute difference (grey levels) under which two views count as one
VARIANTS = ("auto", "balanced", "all", "none", "single")
REREAD_BELOW = 0.5  # recognition score under which a box is read again from another view
# ... at most this many times in all: a box still read badly from three views holds no
# legible text (in the bench set, such boxes were speckle read as a CJK glyph, each read
# from every view of a clip: 6 reads for nothing)
MAX_READS = 3

COLOR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"}
_YBR_TO_CONVERT = {"YBR_FULL", "YBR_FULL_422"}


@dataclass(frozen=True)
class View:
    """One 8-bit rendering of the stored pixels. ``scale`` is view pixels per stored pixel
    (1, or 2-4 for enlarged small images); ``name`` says which rendering it is; ``base``
    names the plain rendering a contrast variant was made from ('' for a plain one).
    ``detect`` False: the view is only read from (the 'balanced' set detects on contrast
    variants, which find more, and reads from the plain rendering, which reads better)."""

    image: np.ndarray
    scale: int
    name: str
    base: str = ""
    detect: bool = True
    frame: bool = False  # one sampled frame of a clip (read from when its projections read badly)


# ----------------------------------------------------------------------------- frames


def projections(frames: np.ndarray) -> list[np.ndarray]:
    """Temporal min and max projections plus the first, middle and last frame.

    Callers detect on these few images once and apply the union of boxes to every frame:
    static text survives in the min projection with moving anatomy suppressed, text shown
    on only some frames survives in the max, and the sampled frames give a clean reading
    of text that changes (counters, clocks) where the projections smear it. Exact
    duplicates are dropped, so a single frame (or a static clip) yields one image.
    ``frames`` is (N, H, W) or (N, H, W, C); a lone 2-D frame is accepted too (a lone
    color frame must come as (1, H, W, C): (H, W, 3) cannot be told from 3 gray frames).
    """
    arr = np.asarray(frames)
    if arr.ndim == 2:
        arr = arr[None]
    n = arr.shape[0]
    if n == 1:
        return [arr[0]]
    picked = [arr.min(axis=0), arr.max(axis=0), arr[0], arr[n // 2], arr[-1]]
    out: list[np.ndarray] = []
    for p in picked:
        if not any(p.shape == q.shape and np.array_equal(p, q) for q in out):
            out.append(p)
    return out


def sample_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` frames, evenly spread, first and last included: what a re-check, a
    verify or the screen looks at in a clip."""
    count = frames.shape[0]
    if count <= n:
        return frames
    idx = sorted({0, count - 1, *(round(k * (count - 1) / (n - 1)) for k in range(n))})
    return frames[idx]


def header_window(ds: Dataset) -> tuple[float, float] | None:
    """The header's first (center, width), or None when absent or unreadable."""
    try:
        c, w = ds.get("WindowCenter"), ds.get("WindowWidth")
        if c is None or w is None:
            return None
        c = c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c
        w = w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w
        return float(c), float(w)
    except (TypeError, ValueError, IndexError):
        return None


def _as_stack(frames: np.ndarray, photometric: str) -> np.ndarray:
    """(N, H, W[, C]) whatever the caller passed: one frame or many, gray or color."""
    arr = np.asarray(frames)
    color = photometric in COLOR
    if color:
        return arr[None] if arr.ndim == 3 else arr
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr[None] if arr.ndim == 2 else arr


def to_rgb(image: np.ndarray, photometric: str, ds: Dataset | None) -> np.ndarray:
    """One color image as RGB uint8; PALETTE COLOR through the dataset's LUT."""
    if photometric in _YBR_TO_CONVERT:
        from pydicom.pixels import convert_color_space

        image = convert_color_space(np.asarray(image), photometric, "RGB")
    elif photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        image = apply_color_lut(np.asarray(image), ds)
    return _scale_to_uint8(image)


def _scale_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    top = float(arr.max()) if arr.size else 0.0
    if top <= 255 and float(arr.min()) >= 0:
        return arr.astype(np.uint8)
    lo = min(0.0, float(arr.min()))
    return ((arr.astype(np.float32) - lo) * (255.0 / max(1.0, top - lo))).clip(0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- gray views


def _rescale(ds: Dataset | None) -> tuple[float, float]:
    if ds is None:
        return 1.0, 0.0
    try:
        slope = float(ds.get("RescaleSlope", 1) or 1)
        intercept = float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return 1.0, 0.0
    return slope, intercept


def linear(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    span = max(hi - lo, 1e-6)
    return ((arr.astype(np.float32) - lo) * (255.0 / span)).clip(0, 255).astype(np.uint8)


def gray_views(
    image: np.ndarray, photometric: str, window: tuple[float, float] | None, ds: Dataset | None = None
) -> list[tuple[str, np.ndarray]]:
    """8-bit renderings of one grayscale image (stored values), named.

    8-bit data is shown as stored. Deeper data gets the header window (center, width),
    applied after the rescale when ``ds`` gives one, or robust 0.5-99.5 percentiles when
    there is no usable window; plus the full stored range when that shows something the
    window clips. MONOCHROME1 is inverted so text looks as it does on a viewer.
    """
    img = np.asarray(image)
    invert = photometric == "MONOCHROME1"
    out: list[tuple[str, np.ndarray]] = []
    if img.dtype == np.uint8:
        out.append(("stored", img))
    else:
        vmin, vmax = float(img.min()), float(img.max())
        lo_hi = _window_range(img, window, ds, vmin, vmax)
        if lo_hi is None:
            sample = img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)]
            lo, hi = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
            if hi <= lo:
                lo, hi = vmin, vmax
            name = "percentile"
        else:
            lo, hi = lo_hi
            name = "window"
        out.append((name, linear(img, lo, hi)))
        span = max(vmax - vmin, 1.0)
        if lo > vmin + 0.02 * span or hi < vmax - 0.02 * span:
            out.append(("full", linear(img, vmin, vmax)))
    if invert:
        out = [(n, 255 - v) for n, v in out]
    return out


def _window_range(
    img: np.ndarray, window: tuple[float, float] | None, ds: Dataset | None, vmin: float, vmax: float
) -> tuple[float, float] | None:
    """The header window as a stored-value range, or None when there is none or it does
    not meet the data (a window meant for rescaled values applied without the rescale)."""
    if not window:
        return None
    try:
        center, width = float(window[0]), float(window[1])
    except (TypeError, ValueError, IndexError):
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 1:
        return None
    slope, intercept = _rescale(ds)
    if slope == 0:
        return None
    a = (center - 0.5 - (width - 1) / 2 - intercept) / slope
    b = (center - 0.5 + (width - 1) / 2 - intercept) / slope
    lo, hi = min(a, b), max(a, b)
    sample = img[:: max(1, img.shape[0] // 128), :: max(1, img.shape[1] // 128)]
    inside = float(((sample >= lo) & (sample <= hi)).mean()) if sample.size else 0.0
    if inside < 0.05:  # nearly everything clipped: not a window for these values
        return None
    return lo, hi


# ----------------------------------------------------------------------------- views


def _enlarge_factor(h: int, w: int) -> int:
    side = max(h, w)
    if side >= ENLARGE_BELOW or side == 0:
        return 1
    return max(1, min(4, math.ceil(ENLARGE_TO / side)))


def _view_factor(name: str, h: int, w: int) -> int:
    """How many times larger the detector sees one view (see DOUBLE_BELOW)."""
    if ENLARGE_BELOW <= max(h, w) < DOUBLE_BELOW:
        return 2 if name.endswith("-inv") else 1
    return _enlarge_factor(h, w)


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _low_contrast(img: np.ndarray) -> bool:
    """The whole rendering spans few grey levels (faint overlay on a flat background)."""
    g = _gray(img)
    sample = g[:: max(1, g.shape[0] // 256), :: max(1, g.shape[1] // 256)]
    lo, hi = np.percentile(sample, (0.1, 99.9))
    return float(hi - lo) < LOW_CONTRAST


def _clahe(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(_gray(img))


def _stretch(img: np.ndarray) -> np.ndarray:
    """The 0.1-99.9 percentile range spread over 0-255: a faint overlay on a flat
    background becomes full contrast (CLAHE alone leaves it grey)."""
    g = _gray(img)
    sample = g[:: max(1, g.shape[0] // 256), :: max(1, g.shape[1] // 256)]
    lo, hi = (float(v) for v in np.percentile(sample, (0.1, 99.9)))
    if hi - lo < 4:
        lo, hi = float(g.min()), float(g.max())
    return linear(g, lo, hi)


def detection_views(
    frames: np.ndarray,
    photometric: str,
    window: tuple[float, float] | None = None,
    *,
    ds: Dataset | None = None,
    variants: str = "auto",
    project: bool = True,
) -> list[View]:
    """Every 8-bit view :func:`detect_text` runs the detector on, in reading priority.

    ``project`` False: the frames of a stack are looked at one by one, without the
    temporal projections (a re-check of a few redacted frames, where what is looked for
    is text that changes from frame to frame).

    ``variants``: 'auto' adds a contrast-stretched view only for low-contrast renderings
    (a faint overlay on a flat background: 15 grey levels of text on 30 went from 16 of
    72 lines missed to none); 'all' adds stretched, CLAHE and inverted views of every
    rendering (about twice the time, for audits; on speckle backgrounds it found 3 more
    of 144 lines, all lone letters); 'none' adds nothing. 'balanced' detects on CLAHE
    views of each rendering and an inverted primary one, reading from the plain ones.
    'single' detects on one view per image: the CLAHE of its widest grey rendering (local
    contrast shows text at any level of the range), or a colour image as it is; it is for
    re-checking a redacted single frame, where the first pass already looked everywhere.
    """
    if variants not in VARIANTS:
        raise ValueError(f"variants must be one of {VARIANTS}, not {variants!r}")
    photometric = (photometric or "MONOCHROME2").strip().upper()
    stack = _as_stack(frames, photometric)
    if stack.size == 0:
        return []
    named: list[tuple[str, np.ndarray]] = []
    if stack.shape[0] == 1:
        imgs = [stack[0]]
    elif project:
        imgs = _reading_order(projections(stack))
    else:
        imgs = list(stack)
    # sampled frames come first; with projections, the last two images are the min and max
    n_sampled = len(imgs) if not project else (len(imgs) - 2 if len(imgs) > 2 else 0)
    if photometric in COLOR or (photometric == "PALETTE COLOR" and ds is not None):
        # Projections first, conversion after: converting a long YBR or palette clip
        # would cost several times its size in float memory, and the few projected
        # images are only views (a YBR min projection converted is close enough to
        # the min of the converted frames for finding text).
        for i, img in enumerate(imgs):
            named.append((f"p{i}", to_rgb(img, photometric, ds)))
    else:
        for i, img in enumerate(imgs):
            views = gray_views(img, photometric, window, ds)
            # The full-range rendering is kept for the projections (or the only frame);
            # sampled frames add the window only - their text is in the projections too.
            if i < n_sampled:
                views = views[:1]
            named += [(f"p{i}-{n}", v) for n, v in views]
    extra: list[tuple[str, np.ndarray]] = []

    def sampled(name: str) -> bool:
        return int(name[1:].split("-")[0]) < n_sampled

    plain = [n for n, _ in named]
    # each image's first rendering (its window, or its only one) is the one inverted; of a
    # clip's projections only the min: dark text, which the inverted view is for, survives
    # the min projection, and light text the max
    primary = {n for k, n in enumerate(plain) if k == 0 or n.split("-")[0] != plain[k - 1].split("-")[0]}
    if n_sampled and len(imgs) > n_sampled + 1:
        primary -= {n for n in plain if n.split("-")[0] == f"p{len(imgs) - 1}"}
    # each image's last rendering is its widest (the full range when the window clips it)
    widest = {n for k, n in enumerate(plain) if k == len(plain) - 1 or n.split("-")[0] != plain[k + 1].split("-")[0]}
    if variants != "none":
        for n, v in named:
            # sampled frames of a clip are there for text that changes (clocks, counters),
            # which their plain view reads; contrast variants of them add time, not text:
            # static faint text is in the min/max projections, which get every variant
            if sampled(n):
                continue
            if variants == "single":
                if v.ndim == 2 and n == plain[-1]:
                    extra.append((n + "-clahe", _clahe(v)))
                continue
            low = _low_contrast(v)
            if variants == "all" or low:
                extra.append((n + "-stretch", _stretch(v)))
            # one CLAHE per image, of its widest rendering: local contrast shows text at any
            # level of the range, so the window's CLAHE found nothing more (both bench sets)
            if variants == "all" or (variants == "balanced" and not low and v.ndim == 2 and n in widest):
                extra.append((n + "-clahe", _clahe(v)))
            if variants == "all" or (variants == "balanced" and n in primary):
                extra.append((n + "-inv", 255 - v))
    out: list[View] = []
    alias: dict[str, str] = {}  # a plain rendering dropped as a twin -> the view kept for it
    for n, v in named + extra:
        base = "" if n in plain else n.rsplit("-", 1)[0]
        base = alias.get(base, base)
        # 'balanced' detects on a grey image's contrast variants only, and colour images
        # (whose colours show their text) as they are. A clip's sampled frames are only
        # read from: their text is in the projections, and the re-check detects on
        # redacted frames anyway (three detector passes fewer per clip).
        if variants in ("balanced", "single"):
            detect = (not project or not sampled(n)) and (bool(base) or v.ndim == 3 or sampled(n))
        else:
            detect = True
        twin = next((k for k, o in enumerate(out) if _same(v, o.image)), None)
        if twin is not None:
            if detect and not out[twin].detect:
                out[twin] = replace(out[twin], detect=True)
            if not base:
                alias[n] = out[twin].name
            continue
        out.append(View(v, 1, n, base, detect, project and not base and sampled(n)))
    h, w = out[0].image.shape[:2] if out else (0, 0)
    factors = [_view_factor(o.name, h, w) for o in out]
    if any(f > 1 for f in factors):
        import cv2

        out = [o if f == 1 else replace(o, image=cv2.resize(o.image, (w * f, h * f), interpolation=cv2.INTER_CUBIC),
                                        scale=f)
               for o, f in zip(out, factors, strict=True)]
    return out



def _reading_order(imgs: list[np.ndarray]) -> list[np.ndarray]:
    """Sampled frames first (they read cleanly), then the min and max projections; the
    list from :func:`projections` is [min, max, first, middle, last]."""
    if len(imgs) <= 2:
        return imgs
    return imgs[2:] + imgs[:2]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < SAME_VIEW


def _band_tiles(bands: Sequence[tuple[int, int]], w: int) -> list[tuple[int, int, int, int]]:
    """:func:`tiles` of each [start, stop) row band of a w-wide image, in image coordinates."""
    return [(b0 + y0, x0, b0 + y1, x1) for b0, b1 in bands if b1 > b0 for y0, x0, y1, x1 in tiles(b1 - b0, w)]


def tiles(h: int, w: int, size: int = TILE, overlap: int = OVERLAP) -> list[tuple[int, int, int, int]]:
    """(y0, x0, y1, x1) windows of at most size x size covering an h x w image, adjacent
    ones overlapping by at least ``overlap`` pixels."""

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        count = math.ceil((n - overlap) / (size - overlap))
        step = (n - size) / (count - 1)
        return [round(i * step) for i in range(count)]

    return [(y, x, min(h, y + size), min(w, x + size)) for y in starts(h) for x in starts(w)]


# ----------------------------------------------------------------------------- boxes


def _overlaps(a: Rect, b: Rect) -> bool:
    """Same text: rectangles of about the same line height that intersect and either share
    most of that height (a line split at a tile seam, or found in two views) or one
    mostly lies inside the other (a word within its line). A box the detector drew around
    two lines is kept apart from the single lines other views found inside it: merged,
    every line near it would chain into one block that the recogniser cannot read."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    if min(ah, bh) < 0.6 * max(ah, bh):
        return False
    ix = min(ax + aw, bx + bw) - max(ax, bx)
    iy = min(ay + ah, by + bh) - max(ay, by)
    if ix <= 0 or iy <= 0:
        return False
    if iy >= 0.6 * min(ah, bh):
        return True
    return ix * iy >= 0.5 * min(aw * ah, bw * bh)


def merge_rects(rects: Sequence[Rect]) -> list[tuple[Rect, list[int]]]:
    """Union of overlapping rectangles (transitively), each with the indices it came from."""
    groups: list[tuple[Rect, list[int]]] = [(r, [i]) for i, r in enumerate(rects)]
    changed = True
    while changed:
        changed = False
        out: list[tuple[Rect, list[int]]] = []
        for rect, members in groups:
            for k, (other, om) in enumerate(out):
                if _overlaps(rect, other):
                    x0, y0 = min(rect[0], other[0]), min(rect[1], other[1])
                    x1 = max(rect[0] + rect[2], other[0] + other[2])
                    y1 = max(rect[1] + rect[3], other[1] + other[3])
                    out[k] = ((x0, y0, x1 - x0, y1 - y0), om + members)
                    changed = True
                    break
            else:
                out.append((rect, members))
        groups = out
    return groups


def _grow(r: Rect, h: int, w: int) -> Rect:
    """A detected box grown by a tenth of its height (at least 2 px): for a lone letter
    the detector's box can be a pixel short of the ink, and the recogniser reads better
    with a margin."""
    x, y, rw, rh = r
    g = max(2, round(0.1 * rh))
    x0, y0 = max(0, x - g), max(0, y - g)
    return x0, y0, min(w, x + rw + g) - x0, min(h, y + rh + g) - y0


def _to_stored(r: Rect, scale: int, oy: int, ox: int, h: int, w: int) -> Rect:
    """A rectangle found in a tile of a view, in stored-pixel coordinates (rounded out)."""
    x, y, rw, rh = r
    x0 = (x + ox) // scale
    y0 = (y + oy) // scale
    x1 = min(w, -(-(x + ox + rw) // scale))
    y1 = min(h, -(-(y + oy + rh) // scale))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def detect_text(
    frames: np.ndarray,
    photometric: str,
    window: tuple[float, float] | None,
    engine: TextEngine,
    *,
    ds: Dataset | None = None,
    variants: str = "auto",
    read: bool = True,
    project: bool = True,
    skip_read: Callable[[Rect], bool] | None = None,
    rows: Sequence[tuple[int, int]] | None = None,
) -> list[TextBox]:
    """Text lines in the stored pixels of one image or a stack of frames.

    ``frames``: stored values, (H, W[, C]) or (N, H, W[, C]), in the color space named by
    ``photometric``. ``window``: the header's (center, width) or None. ``ds``: the original
    dataset, optional; it supplies the rescale the window refers to and the palette for
    PALETTE COLOR. Boxes come back in stored-pixel coordinates, merged across views,
    tiles and frames (for a stack, they apply to every frame), each with its text read.
    ``read`` False skips recognition on two-stage engines (text ''): enough for mode
    'all', where every box is blanked whatever it says, and about half the time.
    ``variants`` and ``project``: see :func:`detection_views`. ``skip_read``: boxes (merged,
    stored coordinates) for which it returns True come back unread (text '', score 0):
    the caller already knows what they say. ``rows``: [start, stop) stored-row bands to
    look in, full width (None: the whole image).
    """
    views = detection_views(frames, photometric, window, ds=ds, variants=variants, project=project)
    if not views:
        return []
    h = views[0].image.shape[0] // views[0].scale
    w = views[0].image.shape[1] // views[0].scale
    rects: list[Rect] = []
    source: list[int] = []  # which view found each rect
    texts: list[tuple[str, float]] = []
    two_stage = isinstance(engine, TwoStageEngine)
    for vi, view in enumerate(views):
        if not view.detect:
            continue
        vh, vw = view.image.shape[:2]
        bands = [(0, vh)] if rows is None else [(a * view.scale, min(vh, b * view.scale)) for a, b in rows]
        for y0, x0, y1, x1 in _band_tiles(bands, vw):
            tile = view.image[y0:y1, x0:x1]
            if two_stage:
                found = [(r, ("", 0.0)) for r in engine.locate(tile)]  # type: ignore[attr-defined]
            else:
                found = [((b.x, b.y, b.w, b.h), (b.text, b.score)) for b in engine.detect(tile)]
            for r, t in found:
                sr = _to_stored(r, view.scale, y0, x0, h, w)
                if sr[2] > 0 and sr[3] > 0:
                    rects.append(sr)
                    source.append(vi)
                    texts.append(t)
    groups = [(_grow(r, h, w), m) for r, m in merge_rects(rects)]
    if not two_stage:
        out = []
        for rect, members in groups:
            best = max(members, key=lambda i: (rects[i][2] * rects[i][3], texts[i][1]))
            out.append(TextBox(*rect, texts[best][0], texts[best][1]))
        return out
    if not read:
        return [TextBox(*rect, "", 0.0) for rect, _ in groups]
    index = {v.name: k for k, v in enumerate(views)}
    # a box is read first from the plain rendering its finder was made from, if any; a
    # clip's box read badly there (a clock smeared in the max projection) is read again
    # from the sampled frames
    frames_read = [k for k, v in enumerate(views) if v.frame]
    choices = []
    for _, members in groups:
        found = sorted({source[i] for i in members} | {index[views[source[i]].base] for i in members if views[source[i]].base})
        choices.append(found + [k for k in frames_read if k not in found])
    wanted = [k for k, (r, _) in enumerate(groups) if skip_read is None or not skip_read(r)]
    line_h = float(np.median([r[3] for r, _ in groups])) if groups else None  # of every line found, read or not
    got = _read_groups(engine, views, [groups[k][0] for k in wanted], [choices[k] for k in wanted], line_h)  # type: ignore[arg-type]
    out = [TextBox(*r, "", 0.0) for r, _ in groups]
    for k, box in zip(wanted, got, strict=True):
        out[k] = box
    return out


def read_boxes(
    frames: np.ndarray,
    photometric: str,
    window: tuple[float, float] | None,
    engine: TwoStageEngine,
    rects: Sequence[Rect],
    *,
    ds: Dataset | None = None,
) -> list[TextBox]:
    """Read given boxes (stored-pixel coordinates) from the plain renderings, without
    detecting: for a re-check that located text and needs only the new lines read."""
    if not rects:
        return []
    views = detection_views(frames, photometric, window, ds=ds, variants="none")
    order = list(range(len(views)))
    return _read_groups(engine, views, list(rects), [order] * len(rects))


def _strips(rect: Rect, line_h: float) -> list[Rect]:
    """A box much taller than a line (the detector joined stacked lines) as overlapping
    line-high strips, since the recogniser reads exactly one line per crop."""
    x, y, w, h = rect
    if line_h < 6 or h < TALL * line_h:
        return [rect]
    count = round(h / line_h)
    step = (h - line_h) / max(1, count - 1)
    sh = min(h, round(line_h * 1.25))
    return [(x, min(y + round(i * step), y + h - sh), w, sh) for i in range(count)]


TALL = 1.7  # a merged box this many median line heights tall is read as strips


def _read_groups(engine: TwoStageEngine, views: list[View], boxes: list[Rect], choices: list[list[int]],
                 line_h: float | None = None) -> list[TextBox]:
    """Read each box once, from the first of its views (indices in reading priority);
    boxes read poorly are read again from the next. ``line_h``: the usual line height
    (default: the median of ``boxes``)."""
    if not boxes:  # nothing found: no line height to take a median of
        return []
    if line_h is None:
        line_h = float(np.median([r[3] for r in boxes]))
    parts = [_strips(r, line_h) for r in boxes]
    results: list[tuple[str, float]] = [("", 0.0)] * len(boxes)
    strips: list[tuple[TextBox, ...]] = [()] * len(boxes)  # each strip's own reading, for the best result
    pending = list(range(len(boxes)))
    attempt = 0
    while pending and attempt < MAX_READS:
        by_view: dict[int, list[int]] = {}
        for g in pending:
            if attempt < len(choices[g]):
                by_view.setdefault(choices[g][attempt], []).append(g)
        if not by_view:
            break
        for vi, gs in by_view.items():
            view = views[vi]
            s = view.scale
            owner = [g for g in gs for _ in parts[g]]
            rs = [(x * s, y * s, w * s, h * s) for g in gs for x, y, w, h in parts[g]]
            read: dict[int, list[tuple[str, float]]] = {}
            for g, res in zip(owner, engine.read(view.image, rs), strict=True):
                read.setdefault(g, []).append(res)
            for g, lines in read.items():
                text = " ".join(t for t, _ in lines if t.strip())
                score = min(sc for _, sc in lines)
                if score > results[g][1] or not results[g][0]:
                    results[g] = (text, score)
                    if len(parts[g]) > 1:
                        strips[g] = tuple(TextBox(*r, t, sc) for r, (t, sc) in zip(parts[g], lines, strict=True))
        attempt += 1
        pending = [g for g in pending if results[g][1] < REREAD_BELOW]
    return [TextBox(*rect, results[k][0], results[k][1], strips[k]) for k, rect in enumerate(boxes)]

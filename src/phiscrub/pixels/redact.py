"""clean_pixel_data: find text burned into the pixels, blank what identifies, re-encode
losslessly, and only then say so in the header.

Runs on the original header (before the header pass removes the values it needs: the
patient's name to recognise, the manufacturer and model for static rules). Heavy imports
(numpy codecs, the OCR engine) happen only when a file actually needs pixel work.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache

from pydicom.dataset import Dataset

from phiscrub.errors import VerificationFailed
from phiscrub.pixels.boxes import Box
from phiscrub.pixels.ink import brightness, ink_outside, rough_ends, shrink_to_contrast, text_like, tighten
from phiscrub.pixels.rules import matching_boxes
from phiscrub.policy.pixels_config import PixelsConfig

SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
# Re-checks of the redacted pixels: the last one only verifies, each before it may add
# boxes. Two rounds of additions, not one: a device's toolbar (icons between low-contrast
# words, on the seed-17 clip saved as single images) showed a new piece beside the fills
# in each of two rounds, and 4 of its 30 images were quarantined for it.
MAX_RECHECK_ROUNDS = 3
REMNANT = "remnant"  # the reason of a box added for what a fill left of its line


@dataclass
class PixelOutcome:
    performed: bool  # detection and redaction ran, and the re-check found nothing left
    mode: str
    boxes: list[Box] = field(default_factory=list)
    frames: int = 0
    syntax: str = ""
    screen: str = ""  # 'auto' screened an image its header gave no sign for: 'text' or 'clear'

    def manifest(self) -> dict[str, object]:
        out: dict[str, object] = {"performed": self.performed, "mode": self.mode, "frames": self.frames,
                                  "transfer_syntax": self.syntax, "boxes": [b.manifest() for b in self.boxes]}
        if self.screen:
            out["screen"] = self.screen
        return out


def pixel_terms(ds: Dataset):
    """The original header's identifying values, in every form burned-in text takes."""
    from phiscrub.pixels.phi_match import terms_from_header

    return terms_from_header(ds)


def effective_mode(ds: Dataset, cfg: PixelsConfig) -> str:
    """'auto' applies sensitive mode to the kinds of image known to carry burned-in text."""
    if cfg.text_redaction != "auto":
        return cfg.text_redaction
    if str(ds.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return "sensitive"
    if str(ds.get("Modality", "") or "").upper() in cfg.modalities:
        return "sensitive"
    if str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_ROOT):
        return "sensitive"
    image_type = _image_type(ds)
    if image_type & TEXT_IMAGE_TYPES or any("SCREEN" in w for w in image_type):
        return "sensitive"
    return "none"


# ImageType values of images that carry burned-in text outside the modality list, besides
# screen saves and captures (any value naming SCREEN): localizers (scouts), on which CT, MR
# and PT scanners print the patient's name and date of birth (Presidio's CT localizer test
# image does); and derived or secondary images (reformats, key images, annotated exports),
# made after acquisition by software that may burn in what it shows.
TEXT_IMAGE_TYPES = frozenset({"LOCALIZER", "DERIVED", "SECONDARY"})


def _image_type(ds: Dataset) -> frozenset[str]:
    raw = ds.get("ImageType") or []
    values = [raw] if isinstance(raw, str) else list(raw)
    words: set[str] = set()
    for v in values:
        words.update(w for w in str(v).upper().replace("\\", " ").split() if w)
    return frozenset(words)


def clean_pixels(ds: Dataset, cfg: PixelsConfig) -> PixelOutcome:
    if "PixelData" not in ds:
        return PixelOutcome(False, "no-pixel-data")
    mode = effective_mode(ds, cfg)
    static = matching_boxes(ds, cfg.rules)
    screening = mode == "none" and cfg.text_redaction == "auto" and cfg.screen
    if mode == "none" and not static and not screening:
        return PixelOutcome(False, "none")

    import numpy as np

    from phiscrub.pixels import codec
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.phi_match import UNREADABLE, classify, known_values, widened
    from phiscrub.pixels.views import detect_text, header_window, read_boxes, sample_frames

    # a JPEG's own markers can change the colour space: trust the decoded layout
    frames, layout = codec.decode(ds)
    screen = ""
    if screening:
        from phiscrub.pixels.screen import finds_text

        # the header gave no sign: a quick look decides whether the full pass runs
        screen = "text" if finds_text(frames, layout.photometric, get_engine(cfg.engine), ds) else "clear"
        if screen == "text":
            mode = "sensitive"
        elif not static:
            return PixelOutcome(False, "none", frames=frames.shape[0], screen=screen)
    n_frames = frames.shape[0]
    rows, cols = int(ds.Rows), int(ds.Columns)
    photometric = layout.photometric
    window = header_window(ds)
    boxes: list[Box] = list(static)
    engine = get_engine(cfg.engine) if mode != "none" else None
    terms = pixel_terms(ds) if engine is not None else None

    allow = list(cfg.allow) if cfg.allow else None  # None: the matcher's built-in list
    seen: list = []  # first-pass text judged harmless and apart from every sensitive box
    kept: list = []  # every first-pass text box judged harmless

    @cache
    def unchanging():
        """(rows, cols) True where every frame of the source holds the same pixel."""
        same = (frames == frames[:1]).all(axis=0)
        return same.all(axis=-1) if same.ndim == 3 else same

    def leftovers(stack) -> list[Box]:
        """What the re-check still finds outside the boxes. Text touching a box that is
        not wholly inside it is what is left of a redacted line (its last letters, missed
        by a box drawn too tight): it goes whatever it reads as. For a single frame,
        locating (no reading) is enough to see that nothing else appeared: text the first
        pass read and judged harmless sits where it was. Anything new is read and judged.
        Cine frames always get the full re-check: their clocks change where the first
        pass looked."""
        lines = _text_lines(padded)
        located = []
        if n_frames == 1:
            located = detect_text(stack, photometric, window, engine, ds=ds, read=False, variants="single",
                                  rows=_bands(padded, rows))
        else:
            located, judged = find(stack, recheck=True)
        # Text the first pass read and kept needs no second reading. A kept box that
        # touched a sensitive one counts only off the fills' lines: elsewhere its pixels
        # are the ones it was read from, while on a fill's line a box may hold the rest
        # of the redacted text (reading it again would not tell: it goes as a remnant).
        new = [t for t in located if not _covered(t, padded) and not _covered(t, seen, 0.7)
               and not (_covered(t, kept, 0.7) and not any(_same_line(t, p) for p in lines))]
        if new:
            # a box found over our own fills holds no text unless ink lies outside them
            after = brightness(stack, photometric, ds)
            new = [t for t in new if ink_outside(after, _as_box(t), padded) >= t.h]  # a letter's worth
        remnants = _remnants(new, padded)
        if n_frames == 1:
            # only the new lines need reading: the rest was read and judged by the first pass
            others = [(t.x, t.y, t.w, t.h) for t in new if not any(_same_line(t, p) for p in lines)]
            judged = judge(read_boxes(stack, photometric, window, engine, others, ds=ds), recheck=True)
        return remnants + [b for b in judged if not _covered(b, padded) and not any(_overlap(b, r) for r in remnants)]

    def judge(found, recheck: bool) -> list[Box]:
        if recheck and mode == "all":
            # only what reads as text: two letters or digits, read with some confidence (the
            # recogniser reads speckle as CJK glyphs, letters to str.isalnum, at 0.0-0.4)
            found = [t for t in found if _reads_as_text(t)]
        boxes = classify(found, terms, mode, cfg.threshold, allow, list(cfg.patterns),
                         unreadable_below=cfg.unreadable_below if mode == "sensitive" else 0.0)
        # fail closed, but on text only: what could not be read goes where the image shows
        # text-like strokes (the original pixels: a re-check's box over our fill is
        # dropped by the caller as covered)
        return [b for b in boxes if b.reason != UNREADABLE or text_like(bright, b)]

    def completed(stack, found: list) -> list:
        """'all' mode's first pass does not read, so nothing says when the detector stopped
        short of a faint line's last letters (seed-17/19 sets: "... Medica", "1934-01-").
        The lines whose ends run onto anatomy, where that happens, are read, and widened
        by the characters of a header value they stop inside (as in sensitive mode).
        Lines over flat background are not read: there the detector sees every letter."""
        values = known_values(terms)
        if not values or not found:
            return found
        # the other lines are blanked anyway: their text beside a line is not structure.
        # One mask of every line serves each: rough_ends looks only beyond a line's own
        # columns, where the line itself never is.
        covered = np.zeros((rows, cols), dtype=bool)
        for t in found:
            covered[t.y:t.y + t.h, t.x:t.x + t.w] = True
        rough = [i for i, t in enumerate(found) if rough_ends(bright, _as_box(t), covered)]
        if not rough:
            return found
        read = read_boxes(stack, photometric, window, engine, [(found[i].x, found[i].y, found[i].w, found[i].h)
                                                               for i in rough], ds=ds)
        out = list(found)
        for i, t in zip(rough, read, strict=True):
            wide = [widened(p, "all-text", values) for p in (t, *t.lines)]  # a tall box: each strip
            x0, x1 = min(w.x for w in wide), min(cols, max(w.x + w.w for w in wide))
            out[i] = replace(found[i], x=x0, w=x1 - x0)
        return out

    def find(stack, recheck: bool = False) -> tuple[list, list[Box]]:
        """(every text box found, those to blank)."""
        # 'all' mode blanks whatever the detector finds, so the first pass need not read;
        # its re-check reads, and counts only what reads as text (two letters or digits),
        # so a detector's stray box on anatomy cannot keep a clean image in quarantine.
        read = mode != "all" or recheck
        # the first pass looks through every view; the re-check of redacted frames uses the
        # quicker set (what it must catch is text the first pass never saw, e.g. a clock)
        views = "auto" if recheck else cfg.views
        # A clip's re-check reads what it finds again, since text can change between
        # frames; but where every frame holds the same pixels, what the first pass read
        # and judged harmless says the same in every frame, and is not read again.
        skip = None
        if recheck and n_frames > 1:
            def skip(r) -> bool:
                x, y, w, h = r
                return bool(unchanging()[y:y + h, x:x + w].all()) and _covered(Box(x, y, w, h, None, ""), seen, 0.7)
        # a re-check looks at each sampled frame itself: their min/max add nothing there
        found = detect_text(stack, photometric, window, engine, ds=ds, read=read, variants=views, project=not recheck,
                            skip_read=skip)
        if mode == "all" and not recheck:
            found = completed(stack, found)
        judged = judge([t for t in found if skip is None or not skip((t.x, t.y, t.w, t.h))], recheck)
        if not recheck:
            # only text judged harmless may be recognised again without a second reading:
            # what remains of a sensitive line after redaction must always be read again
            seen.extend(t for t in found if not any(_overlap(t, j) for j in judged))
            for t in found:  # a box read as strips, some of them sensitive: the others are kept
                if not _judged(t, judged):
                    kept.extend(p for p in (t.lines or (t,)) if not _judged(p, judged))
        return found, judged

    if engine is not None:
        bright = brightness(frames, photometric, ds)
        shrink = tighten if cfg.boxes == "ink" else shrink_to_contrast
        boxes += [shrink(bright, b) for b in find(frames)[1]]
    padded = [b.padded(cfg.padding, rows, cols) for b in boxes]
    redacted = _redact(codec, frames, padded, cfg, photometric)
    if engine is not None:
        # Re-check a sample of redacted frames: clocks and counters change frame to frame,
        # so what the projections missed shows up here; add it and look again.
        for _ in range(MAX_RECHECK_ROUNDS):
            left = leftovers(sample_frames(redacted, cfg.recheck_frames))
            if not left:
                break
            padded += [shrink(bright, Box(b.x, b.y, b.w, b.h, None, b.reason)).padded(cfg.padding, rows, cols)
                       for b in left]
            redacted = _redact(codec, frames, padded, cfg, photometric)
        else:
            raise VerificationFailed("identifying text still found in the pixels after redaction")
    if padded:
        syntax = codec.encode_into(ds, redacted, layout)
    else:  # nothing to blank: the stored pixels leave exactly as they came, lossy or not
        syntax = str(codec.syntax_of(ds))  # as codec.decode read it (a raw data set has no file meta)
    ds.BurnedInAnnotation = "NO"
    return PixelOutcome(True, mode, padded, n_frames, syntax, screen)


def clean_overlays(ds: Dataset, cfg: PixelsConfig) -> list[Box]:
    """Overlays kept under clean_graphics are bit planes that can carry text too (a name,
    a date): OCR each one and clear the bits under identifying text."""
    groups = sorted({t >> 16 for t in ds._dict if 0x6000 <= (t >> 16) <= 0x60FF and not (t >> 16) & 1
                     and ((t >> 16) << 16 | 0x3000) in ds._dict})
    if not groups:
        return []
    import numpy as np
    from pydicom.pixels import pack_bits

    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.phi_match import classify
    from phiscrub.pixels.views import detect_text

    mode = cfg.text_redaction if cfg.text_redaction in ("all", "sensitive") else "sensitive"
    engine = get_engine(cfg.engine)
    terms = pixel_terms(ds)
    allow = list(cfg.allow) if cfg.allow else None
    cleared: list[Box] = []
    for g in groups:
        try:
            bits = ds.overlay_array(g)
        except Exception as e:  # noqa: BLE001 - an overlay we cannot read cannot be released
            raise VerificationFailed(f"overlay {g:04X} cannot be decoded ({type(e).__name__})") from None
        planes = bits if bits.ndim == 3 else bits[None]
        img = (planes.max(axis=0) * 255).astype(np.uint8)
        found = detect_text(img[None], "MONOCHROME2", None, engine, read=True)
        boxes = classify(found, terms, mode, cfg.threshold, allow, list(cfg.patterns))
        if not boxes:
            continue
        rows, cols = img.shape
        for b in boxes:
            pb = b.padded(cfg.padding, rows, cols)
            planes[:, pb.y:pb.y + pb.h, pb.x:pb.x + pb.w] = 0
            cleared.append(Box(pb.x, pb.y, pb.w, pb.h, None, f"overlay-{g:04X}-{b.reason}"))
        ds[(g << 16) | 0x3000].value = pack_bits(planes.ravel())
    return cleared


def _redact(codec, frames, boxes: list[Box], cfg: PixelsConfig, photometric: str):
    if cfg.inpaint:
        return _inpaint(frames, boxes)
    return codec.redact(frames, boxes, cfg.fill, photometric=photometric)


def _inpaint(frames, boxes: list[Box]):
    """Opt-in: fill boxes from their surroundings (OpenCV Telea) instead of a flat fill."""
    import cv2
    import numpy as np

    out = frames.copy()
    for i in range(out.shape[0]):
        mask = np.zeros(out.shape[1:3], dtype=np.uint8)
        for b in boxes:
            if b.frame is None or b.frame == i:
                mask[b.y:b.y + b.h, b.x:b.x + b.w] = 255
        if not mask.any():
            continue
        frame = out[i]
        if frame.dtype in (np.uint8, np.uint16) and (frame.ndim == 2 or frame.shape[2] == 3 and frame.dtype == np.uint8):
            out[i] = cv2.inpaint(frame, mask, 3, cv2.INPAINT_TELEA)
        else:
            f32 = frame.astype(np.float32)
            out[i] = cv2.inpaint(f32, mask, 3, cv2.INPAINT_TELEA).round().astype(frame.dtype)
    return out


BAND_SHARE = 0.6  # bands covering more of the image than this: look at all of it
BAND_REACH = 16  # rows a band reaches beyond its box at least (and the gap it bridges)


def _bands(boxes: list[Box], rows: int) -> list[tuple[int, int]] | None:
    """Row bands around redacted boxes, for a single frame's re-check: None for the whole
    image.

    Why this is enough: a single frame's re-check looks at the same pixels the first pass
    did, except inside the fills. What it is for is what a fill left of its line (a last
    letter, a descender), which lies in the fill's own rows. Each band reaches a line
    height (at least 16 rows) beyond its box, so the detector sees the line whole and
    with the context around it; full width, since a line runs sideways."""
    spans = sorted((max(0, b.y - max(BAND_REACH, b.h)), min(rows, b.y + b.h + max(BAND_REACH, b.h)))
                   for b in boxes if b.h > 0)
    merged: list[list[int]] = []
    for a, z in spans:
        if merged and a <= merged[-1][1] + BAND_REACH:
            merged[-1][1] = max(merged[-1][1], z)
        else:
            merged.append([a, z])
    if not merged or sum(z - a for a, z in merged) > BAND_SHARE * rows:
        return None
    return [(a, z) for a, z in merged]


def _intersection(a, b) -> int:
    ix = max(0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    return ix * iy


def _overlap(a, b) -> bool:
    return _intersection(a, b) > 0


def _as_box(t) -> Box:
    return Box(t.x, t.y, t.w, t.h, None, "text")


def _reads_as_text(t) -> bool:
    """'all' mode's re-check test for text: two ASCII letters or digits read at a score of
    0.1 or more, or two letters of any script at 0.5 or more."""
    ascii_alnum = sum(c.isascii() and c.isalnum() for c in t.text)
    return (ascii_alnum >= 2 and t.score >= 0.1) or (sum(c.isalnum() for c in t.text) >= 2 and t.score >= 0.5)


def _judged(t, judged: list[Box]) -> bool:
    """Whether text box ``t`` (or strip) is one the matcher judged sensitive: a judged box
    keeps its text's rows, and only its columns may have grown (a value it stopped short
    of, see phiscrub.pixels.truncated)."""
    return any(j.y == t.y and j.h == t.h and _overlap(j, t) for j in judged)


def _text_lines(padded: list[Box]) -> list[Box]:
    """The fills that blank text, not the remnants added for what a fill left. Measured
    against remnants too, a detector's stack of boxes over colour Doppler each passed as
    the next one's remnant, and a name's fill climbed 15 rows a round (to 161 rows)."""
    return [p for p in padded if p.reason != REMNANT]


def _remnants(new: list, padded: list[Box]) -> list[Box]:
    """The re-check's new boxes that continue a redacted line: they go unread."""
    lines = _text_lines(padded)
    return [Box(t.x, t.y, t.w, t.h, None, REMNANT) for t in new if any(_same_line(t, p) for p in lines)]


def _same_line(t, p) -> bool:
    """Text ``t`` (a detector's box) continues the line redacted by ``p``: it touches p, its
    middle lies within p's rows, and most of its rows are p's. (A box the detector drew
    over a whole region of anatomy can have its middle in a tall box's rows: it is no
    remnant of a line, and blanking it lost a third of an ultrasound sector.)"""
    middle = t.y + t.h / 2
    shared = min(t.y + t.h, p.y + p.h) - max(t.y, p.y)
    return _overlap(t, p) and p.y <= middle <= p.y + p.h and t.h <= 2.5 * max(1, p.h) and shared >= 0.5 * t.h


def _covered(b: Box, boxes: list[Box], need: float = 0.9) -> bool:
    area = max(1, b.w * b.h)
    return any(_intersection(b, o) >= need * area for o in boxes)

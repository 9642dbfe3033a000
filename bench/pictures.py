"""The before/after pictures of bench/README.md's burned-in text sections, made from images
with clear sources (no JSL image: that set states no licence, so none of it is committed).

- ``img/screen_axial.png``: pydicom's CT_small (NEMA WG04 sample CT1_UNC, downsized by
  pydicom) enlarged to 512x512 with a made-up patient block burned across the body; an
  ORIGINAL/PRIMARY/AXIAL slice whose header says nothing of text. Left: the input; right:
  phiscrub with the default config ('auto': the screen fires, and the full 'sensitive' pass
  blanks the name, the ID and the birth date, each matched to the header's values).
- ``img/fill_block.png``: a text block over noise. Left: the input; middle: each line filled
  with its own ring's median (before commit 68bc615); right: one fill for the block.
- ``img/heldout.png``: bench/pixel_heldout.py, seed 101, a colour Doppler ultrasound with a
  cyan bitmap-font block over speckle. Left: the input; right: phiscrub 'sensitive'.

    python bench/pictures.py
"""

from __future__ import annotations

import io
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pydicom

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "img"
KEY = b"bench-key-0123456789abcdef"


def _rgb8(a: np.ndarray, photometric: str = "MONOCHROME2") -> np.ndarray:
    if a.ndim == 3:
        return cv2.cvtColor(a.astype(np.uint8), cv2.COLOR_RGB2BGR)
    f = a.astype(np.float32)
    g = ((f - f.min()) * (255.0 / max(1.0, float(f.max() - f.min())))).astype(np.uint8)
    return cv2.cvtColor(255 - g if photometric == "MONOCHROME1" else g, cv2.COLOR_GRAY2BGR)


def _side_by_side(*imgs: np.ndarray, gap: int = 8) -> np.ndarray:
    h = max(i.shape[0] for i in imgs)
    cols = []
    for k, i in enumerate(imgs):
        pad = np.full((h, i.shape[1], 3), 255, np.uint8)
        pad[:i.shape[0]] = i
        cols.append(pad)
        if k < len(imgs) - 1:
            cols.append(np.full((h, gap, 3), 255, np.uint8))
    return np.hstack(cols)


def _transform(data: bytes, doc: dict) -> bytes:
    from phiscrub.keys import KeyRing
    from phiscrub.policy.config import from_mapping
    from phiscrub.transform import transform_dicom

    cfg = from_mapping(doc)
    return transform_dicom(data, cfg, KeyRing(KEY), cfg.policy.digest()).data


def screen_axial() -> np.ndarray:
    sys.path.insert(0, str(ROOT))
    from tests.pixels.test_screen import _axial

    ds, _ = _axial(True)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = pydicom.dcmread(io.BytesIO(_transform(buf.getvalue(), {})))
    return _side_by_side(_rgb8(ds.pixel_array), _rgb8(out.pixel_array))


def fill_block() -> np.ndarray:
    from phiscrub.pixels import codec
    from phiscrub.pixels.boxes import Box
    from phiscrub.pixels.ink import background

    rng = np.random.default_rng(11)
    img = rng.normal(100, 30, (120, 260)).clip(0, 255).astype(np.uint8)
    boxes = []
    for k, text in enumerate(("NAME: DOE JANE", "DOB: 1961-03-14", "ID: 4471923")):
        m = np.zeros(img.shape, np.uint8)
        cv2.putText(m, text, (20, 32 + 26 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 255, 1, cv2.LINE_AA)
        a = m.astype(np.float32) / 255
        img = np.rint(img * (1 - a) + 250 * a).astype(np.uint8)
        ys, xs = np.nonzero(m)
        boxes.append(Box(int(xs.min()) - 3, int(ys.min()) - 3, int(np.ptp(xs)) + 7, int(np.ptp(ys)) + 7))
    frames = img[None]
    per_line = frames.copy()
    for b in boxes:  # the old way: each box its own ring's value
        per_line[:, b.y:b.y + b.h, b.x:b.x + b.w] = background(frames, b)[0, 0]
    block = codec.redact(frames, boxes, "background")
    big = [cv2.resize(_rgb8(x[0]), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST) for x in (frames, per_line, block)]
    return _side_by_side(*big)


def heldout() -> np.ndarray:
    sys.path.insert(0, str(ROOT / "bench"))
    import pixel_heldout

    with tempfile.TemporaryDirectory() as tmp:
        labels = pixel_heldout.build(Path(tmp), 101, limit=2)
        name = next(n for n, e in labels["files"].items() if e["base"] == "us_doppler")
        data = (Path(tmp) / name).read_bytes()
    src = pydicom.dcmread(io.BytesIO(data))
    out = pydicom.dcmread(io.BytesIO(_transform(data, {"pixels": {"text_redaction": "sensitive"}})))
    return _side_by_side(_rgb8(src.pixel_array), _rgb8(out.pixel_array))


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, make in (("screen_axial", screen_axial), ("fill_block", fill_block), ("heldout", heldout)):
        path = OUT / f"{name}.png"
        cv2.imwrite(str(path), make(), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Face recall of clean_recognizable_visual_features, judged by a second detector (issue 19).

Each photograph under --data (default bench/data/faces, then bench/out/faces) is wrapped in a
DICOM VL Photographic Image (RGB, 8 bit, explicit VR little endian, as in
tests/pixels/test_faces.py) and run through the real path: `phiscrub deidentify` (in-process,
one run per image, `-j 1`) with `options: [clean_recognizable_visual_features]`. The output is
decoded and compared with the input.

Ground truth: nobody labelled these faces by hand. The faces counted are the ones the JUDGE,
dlib's HOG frontal face detector (dlib.get_frontal_face_detector(), built into the dlib-bin
wheel, no model file; a detector unrelated to phiscrub's CenterFace), finds in the ORIGINAL
image. So faces that neither detector sees are not counted (the judge misses profiles and
small faces), and a judge false positive counts as a face to hide.

A judge face is
- covered: >= 50% of its box lies inside phiscrub's fill (the 'face' boxes of the audit's
  item record, checked against the decoded output: every filled pixel is black);
- re-found: the judge, run on the output, finds a box with IoU >= 0.3 with it;
- hidden: covered, or not re-found (the issue's definition). "strict" also reports covered
  AND not re-found. An image phiscrub does not release (quarantined) has its faces counted
  apart and NOT as hidden: the recall is conservative there.

Each image is also run downscaled to half its sides (INTER_AREA): smaller faces. Reported per
image and in total, per scale: judge faces on originals, hidden, recall, CenterFace faces on
the original (phiscrub.pixels.faces.detect), share of the image area filled, seconds per
image (wall time of the CLI run, model already loaded).

Usage: python bench/bench_faces.py [--data DIR ...] [--upsample 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from phiscrub.cli import app
from phiscrub.pixels.codec import decode_frames
from phiscrub.pixels.faces import detect

ROOT = Path(__file__).resolve().parent
DEFAULT_DATA = [ROOT / "data" / "faces", ROOT / "out" / "faces"]
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
CONFIG = "options: [clean_recognizable_visual_features]\n"
KEY = "bench-faces-key-0123456789abcdef"  # a throwaway key: the bench looks at pixels only
COVERED = 0.5  # share of a judge box inside the fill for it to count as covered
REFOUND_IOU = 0.3
SCALES = (1.0, 0.5)
EXTS = {".jpg", ".jpeg", ".png"}
# Judge boxes that a person looked at and found are not faces, (x0, y0, x1, y1) at full size.
# They are reported apart ("reviewed" recall leaves them out); the raw recall keeps them.
NOT_FACES = {
    "skimage__astronaut.jpg": [(126, 335, 216, 426)],  # the STS-93 mission patch on the suit
}


def judge(rgb: np.ndarray, upsample: int) -> list[tuple[int, int, int, int]]:
    """dlib HOG frontal faces as (x0, y0, x1, y1), clipped to the image."""
    import dlib

    det = judge.detector if hasattr(judge, "detector") else dlib.get_frontal_face_detector()
    judge.detector = det
    rows, cols = rgb.shape[:2]
    out = []
    for r in det(np.ascontiguousarray(rgb), upsample):
        x0, y0 = max(0, r.left()), max(0, r.top())
        x1, y1 = min(cols, r.right() + 1), min(rows, r.bottom() + 1)
        if x1 > x0 and y1 > y0:
            out.append((x0, y0, x1, y1))
    return out


def iou(a, b) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def instance(rgb: np.ndarray) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = VL_PHOTO
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = VL_PHOTO, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Bench^Face", "FACEBENCH", "XC"
    ds.RecognizableVisualFeatures = "YES"
    rows, cols = rgb.shape[:2]
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    return ds


def run_phiscrub(runner: CliRunner, rgb: np.ndarray, work: Path) -> tuple[np.ndarray | None, list[dict], float, str]:
    """(decoded output or None if not released, the audit's face boxes, seconds, status)."""
    src, dst = work / "in", work / "out"
    for d in (src, dst):
        if d.exists():
            for p in sorted(d.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
    src.mkdir(parents=True, exist_ok=True)
    instance(rgb).save_as(src / "x.dcm", enforce_file_format=True)
    cfg = work / "c.yaml"
    cfg.write_text(CONFIG)
    t0 = time.perf_counter()
    res = runner.invoke(
        app, ["deidentify", str(src), str(dst), "-q", "--config", str(cfg), "-j", "1"], env={"PHISCRUB_KEY": KEY}, catch_exceptions=False
    )
    secs = time.perf_counter() - t0
    audit = dst / ".phiscrub" / "audit.jsonl"
    items = [json.loads(x) for x in audit.read_text().splitlines() if '"event":"item"' in x] if audit.exists() else []
    item = items[0] if items else {}
    boxes = [b for b in item.get("manifest", {}).get("pixels", {}).get("boxes", []) if b.get("reason") == "face"]
    outs = [p for p in dst.rglob("*.dcm") if ".phiscrub" not in p.parts]
    if not outs:
        why = item.get("status") or (res.output.strip().splitlines() or [f"exit {res.exit_code}"])[-1][:80]
        return None, boxes, secs, f"not released: {why}"
    return decode_frames(dcmread(outs[0]))[0], boxes, secs, "ok"


def score(rgb: np.ndarray, runner: CliRunner, work: Path, upsample: int, not_faces: list) -> dict:
    rows, cols = rgb.shape[:2]
    truth = judge(rgb, upsample)
    cf = detect(rgb)
    after, boxes, secs, status = run_phiscrub(runner, rgb, work)
    fill = np.zeros((rows, cols), dtype=bool)
    for b in boxes:
        fill[b["y"] : b["y"] + b["h"], b["x"] : b["x"] + b["w"]] = True
    row = {
        "size": f"{cols}x{rows}",
        "judge": len(truth),
        "centerface": len(cf),
        "fill_boxes": len(boxes),
        "area_filled": float(fill.mean()),
        "secs": secs,
        "status": status,
    }
    if after is None:  # nothing released (quarantined): not counted as hidden, reported apart
        row.update(hidden=0, strict=0, covered=0, refound=0, quarantined=len(truth), black_ok=True, not_faces=0, not_faces_missed=0)
        return row
    row["black_ok"] = bool((after[fill] == 0).all())  # the recorded fill is really in the pixels
    again = judge(after, upsample)
    covered = refound = hidden = strict = 0
    false_pos = missed_fp = 0
    for t in truth:
        x0, y0, x1, y1 = t
        fp = any(iou(t, nf) >= 0.5 for nf in not_faces)
        cov = float(fill[y0:y1, x0:x1].mean())
        is_cov = cov >= COVERED
        is_re = any(iou(t, a) >= REFOUND_IOU for a in again)
        covered += is_cov
        refound += is_re
        hidden += is_cov or not is_re
        strict += is_cov and not is_re
        false_pos += fp
        missed_fp += fp and not (is_cov or not is_re)
    row.update(
        hidden=hidden,
        strict=strict,
        covered=covered,
        refound=refound,
        quarantined=0,
        judge_after=len(again),
        not_faces=false_pos,
        not_faces_missed=missed_fp,
    )
    return row


def images(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs:
        if d.is_dir():
            out += sorted(p for p in d.iterdir() if p.suffix.lower() in EXTS)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", action="append", type=Path, help="folder of photographs (repeatable)")
    ap.add_argument("--upsample", type=int, default=1, help="dlib upsampling passes for the judge (default 1)")
    ap.add_argument("--json", type=Path, help="write per-image rows here")
    args = ap.parse_args(argv)
    files = images(args.data or DEFAULT_DATA)
    if not files:
        print("no images found", file=sys.stderr)
        return 2
    runner = CliRunner()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = np.full((64, 64, 3), 128, np.uint8)
        run_phiscrub(runner, warm, work)  # load the model once, outside the timings
        for scale in SCALES:
            print(f"\n== scale {scale:g} ==")
            print(f"{'image':58s} {'size':>10s} {'judge':>5s} {'hidden':>6s} {'strict':>6s} {'cf':>3s} {'fill%':>6s} {'s':>5s}")
            for f in files:
                bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if bgr is None:
                    print(f"{f.name}: unreadable", file=sys.stderr)
                    continue
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if scale != 1.0:
                    rgb = cv2.resize(
                        rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))), interpolation=cv2.INTER_AREA
                    )
                nf = [tuple(round(v * scale) for v in box) for box in NOT_FACES.get(f.name, [])]
                row = score(rgb, runner, work, args.upsample, nf)
                row.update(image=f"{f.parent.parent.name}/{f.name}", scale=scale)
                rows.append(row)
                flag = "" if row["status"] == "ok" and row["black_ok"] else f"  [{row['status']}, black_ok={row['black_ok']}]"
                print(
                    f"{row['image'][:58]:58s} {row['size']:>10s} {row['judge']:5d} {row['hidden']:6d} {row['strict']:6d} "
                    f"{row['centerface']:3d} {100 * row['area_filled']:6.1f} {row['secs']:5.2f}{flag}"
                )
    print("\n== totals ==")
    for scale in SCALES:
        rs = [r for r in rows if r["scale"] == scale]
        n = sum(r["judge"] for r in rs)
        h = sum(r["hidden"] for r in rs)
        s = sum(r["strict"] for r in rs)
        q = sum(r["quarantined"] for r in rs)
        cf = sum(r["centerface"] for r in rs)
        area = float(np.mean([r["area_filled"] for r in rs]))
        secs = float(np.mean([r["secs"] for r in rs]))
        nf = sum(r["not_faces"] for r in rs)
        nf_missed = sum(r["not_faces_missed"] for r in rs)
        rn, rh = n - nf, h - (nf - nf_missed)
        missed = [r["image"] for r in rs if r["hidden"] < r["judge"]]
        print(
            f"scale {scale:g}: images {len(rs)}, judge faces {n}, hidden {h} (recall {h / n if n else float('nan'):.3f}), "
            f"strict {s} ({s / n if n else float('nan'):.3f}), quarantined faces {q}, CenterFace faces on originals {cf}, "
            f"mean area filled {100 * area:.1f}%, mean s/image {secs:.2f}"
        )
        print(
            f"  reviewed (less {nf} judge boxes seen to be no face): faces {rn}, hidden {rh} (recall {rh / rn if rn else float('nan'):.3f})"
        )
        if missed:
            print(f"  images with a face not hidden: {', '.join(missed)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

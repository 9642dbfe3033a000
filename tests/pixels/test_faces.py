"""clean_recognizable_visual_features on 2-D images: a real photograph of a face (NASA's,
public domain: tests/data/faces/SOURCES.md) in a VL Photographic instance comes out with
the face filled, recorded, and not found again; images outside the scanned set, and every
image when the option is off, keep their pixels bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from tests.conftest import TEST_FILES

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")

FACE = Path(__file__).resolve().parents[1] / "data" / "faces" / "astronaut.jpg"
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
VIDEO_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
ON = "options: [clean_recognizable_visual_features]\n"


def _photo() -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)


def _instance(frames: np.ndarray, sop_class: str = VL_PHOTO, modality: str = "XC") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Collins^Eileen", "FACE0001", modality
    ds.RecognizableVisualFeatures = "YES"
    n, rows, cols = frames.shape[:3]
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if n > 1:
        ds.NumberOfFrames = n
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds


def _run(cli, tmp_path: Path, ds: Dataset, config: str = ON) -> tuple[Dataset | None, dict, str]:
    """(output or None, the audit's item record, the CLI's output) of one deidentify run."""
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    ds.save_as(src / "x.dcm", enforce_file_format=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(config)
    res = cli("deidentify", src, tmp_path / "out", "-q", "--config", cfg, "-j", "1")
    outs = list((tmp_path / "out").rglob("*.dcm"))
    audit = (tmp_path / "out" / ".phiscrub" / "audit.jsonl").read_text()
    items = [json.loads(x) for x in audit.splitlines() if '"event":"item"' in x]
    return (dcmread(outs[0]) if outs else None), (items[0] if items else {}), res.output


def _frames(ds: Dataset) -> np.ndarray:
    from phiscrub.pixels.codec import decode_frames

    return decode_frames(ds)


def test_detector_finds_the_astronauts_face() -> None:
    from phiscrub.pixels.faces import detect

    faces = detect(_photo())
    assert len(faces) == 1
    f = faces[0]
    # Eileen Collins's face lies around x 180-270, y 60-180 in the 512x512 photograph
    assert 150 < f.x + f.w / 2 < 300 and 60 < f.y + f.h / 2 < 180 and f.score > 0.5
    assert detect(_photo()) == faces  # deterministic
    assert detect(np.full((512, 512, 3), 128, np.uint8)) == []


def test_face_in_a_photograph_is_filled_recorded_and_gone(cli, tmp_path: Path) -> None:
    from phiscrub.pixels.faces import detect

    photo = _photo()
    out, item, log = _run(cli, tmp_path, _instance(photo[None]))
    assert out is not None, log
    boxes = [b for b in item["manifest"]["pixels"]["boxes"] if b["reason"] == "face"]
    assert boxes and item["manifest"]["faces"]["performed"] is True
    face = detect(photo)[0]  # the fill reaches beyond the detector's box: hair, ears, chin
    assert any(b["x"] <= face.x - 0.1 * face.w and b["y"] <= face.y - 0.1 * face.h
               and b["x"] + b["w"] >= face.x + 1.1 * face.w and b["y"] + b["h"] >= face.y + 1.1 * face.h for b in boxes)
    after = _frames(out)[0]
    mask = np.ones(photo.shape[:2], dtype=bool)
    for b in boxes:
        mask[b["y"]:b["y"] + b["h"], b["x"]:b["x"] + b["w"]] = False
        assert (after[b["y"]:b["y"] + b["h"], b["x"]:b["x"] + b["w"]] == 0).all()  # filled black
    assert np.array_equal(after[mask], photo[mask])  # nothing else changed
    assert (~mask).sum() < 0.2 * mask.size  # a face, not the picture
    assert detect(after) == []
    assert out.RecognizableVisualFeatures == "NO"
    assert "113102" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert str(out.file_meta.TransferSyntaxUID) == ExplicitVRLittleEndian


def test_option_off_leaves_the_photograph_bit_identical(cli, tmp_path: Path) -> None:
    src = _instance(_photo()[None])
    out, item, log = _run(cli, tmp_path, src, config="options: []\n")
    assert out is not None, log
    assert out.PixelData == src.PixelData
    assert out.get("RecognizableVisualFeatures") != "NO"
    assert "113102" not in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert "faces" not in item["manifest"]


def test_ct_is_not_scanned_and_stays_bit_identical(cli, tmp_path: Path) -> None:
    src = dcmread(TEST_FILES / "CT_small.dcm")
    out, item, log = _run(cli, tmp_path, src)
    assert out is not None, log
    assert out.PixelData == src.PixelData
    assert item["manifest"]["faces"] == {"performed": False, "mode": "not-scanned", "frames": 0,
                                         "transfer_syntax": "", "boxes": []}
    assert out.get("RecognizableVisualFeatures") != "NO"


def test_photograph_without_a_face_is_scanned_and_bit_identical(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    plain = np.repeat(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], 3, axis=2).repeat(192, axis=0)
    plain = np.clip(plain.astype(int) + rng.integers(-3, 4, plain.shape), 0, 255).astype(np.uint8)
    src = _instance(plain[None])
    out, item, log = _run(cli, tmp_path, src)
    assert out is not None, log
    assert out.PixelData == src.PixelData
    assert item["manifest"]["faces"]["performed"] is True and item["manifest"]["faces"]["boxes"] == []
    assert out.RecognizableVisualFeatures == "NO"


def test_lossless_source_is_reencoded_in_its_own_syntax(tmp_path: Path) -> None:
    from phiscrub.pixels.faces import clean_faces, detect
    from phiscrub.policy.pixels_config import PixelsConfig

    ds = _instance(_photo()[None])
    ds.compress(RLELossless, encoding_plugin="pydicom")
    outcome = clean_faces(ds, PixelsConfig())
    assert outcome.performed and outcome.boxes and outcome.syntax == RLELossless
    ds.save_as(tmp_path / "o.dcm", enforce_file_format=True)
    back = dcmread(tmp_path / "o.dcm")
    assert str(back.file_meta.TransferSyntaxUID) == RLELossless
    assert detect(_frames(back)[0]) == []


def test_clip_frames_get_their_neighbours_boxes() -> None:
    from phiscrub.pixels.faces import clean_faces
    from phiscrub.policy.pixels_config import PixelsConfig

    photo = _photo()
    grey = np.full_like(photo, 90)
    ds = _instance(np.stack([grey, photo, grey, grey]), sop_class=VIDEO_PHOTO)
    outcome = clean_faces(ds, PixelsConfig())
    frames = {b.frame for b in outcome.boxes}
    # the face is in frame 1 only; frames 0 and 2 are covered too, frame 3 is not
    assert frames == {0, 1, 2}
    out = _frames(ds)
    assert np.array_equal(out[3], grey)


def test_face_still_found_after_filling_quarantines(monkeypatch: pytest.MonkeyPatch) -> None:
    from phiscrub.errors import VerificationFailed
    from phiscrub.pixels import faces

    monkeypatch.setattr(faces, "detect", lambda image, threshold=0.5: [faces.Face(10, 10, 50, 50, 0.9)])
    ds = _instance(_photo()[None])
    before = ds.PixelData
    with pytest.raises(VerificationFailed, match="face"):
        faces.clean_faces(ds, faces.PixelsConfig())
    assert ds.PixelData == before and ds.RecognizableVisualFeatures == "YES"


def test_scope_is_configurable() -> None:
    from phiscrub.pixels.faces import in_scope
    from phiscrub.policy.pixels_config import PixelsConfig, parse_pixels

    photo = _instance(_photo()[None], sop_class="1.2.840.10008.5.1.4.1.1.77.1.5.1", modality="OP")
    assert in_scope(photo, PixelsConfig())  # ophthalmic photograph: a colour OP image
    narrow = parse_pixels({"faces": {"sop_classes": [VL_PHOTO], "modalities": []}})
    assert not in_scope(photo, narrow)
    assert narrow.describe()["faces"] == {"sop_classes": [VL_PHOTO], "modalities": []}
    assert "faces" not in PixelsConfig().describe()


FORK = """
import multiprocessing as mp
import numpy as np
from phiscrub.pixels.faces import detect

img = np.full((64, 64, 3), 100, np.uint8)
detect(img)  # the parent's session, its runtime threads started


def child(_):
    return detect(img) == []


with mp.get_context("fork").Pool(2) as pool:
    assert all(pool.map(child, range(4)))
print("ok")
"""


def test_forked_workers_load_their_own_model() -> None:
    import subprocess
    import sys

    # the timeout only turns a hang into a failure; nothing here is timed
    out = subprocess.run([sys.executable, "-c", FORK], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


def test_cid_113102_is_claimed_only_where_the_face_step_ran():
    """CID 7050's Clean Recognizable Visual Features code: written by an output the face
    step scanned and re-checked, never by one it did not scan (a CT)."""
    from phiscrub.dicom.deid_attrs import performed_options
    from phiscrub.policy.actions import Option
    from phiscrub.policy.profile import Policy

    pol = Policy(options=frozenset({Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES}))
    assert Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES not in performed_options(pol)
    assert Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES in performed_options(pol, faces_cleaned=True)


def test_face_scope_is_in_the_policy_hash_without_clean_pixel_data():
    """Outputs differ when pixels.faces does, so the policy hash must too, also when
    clean_recognizable_visual_features runs without clean_pixel_data."""
    from phiscrub.policy.config import from_mapping

    base = {"options": ["clean_recognizable_visual_features"]}
    narrow = {**base, "pixels": {"faces": {"sop_classes": ["1.2.840.10008.5.1.4.1.1.77.1.4"], "modalities": []}}}
    assert from_mapping(base).policy.digest() != from_mapping(narrow).policy.digest()


def test_a_raw_data_set_without_file_meta_is_scanned(tmp_path: Path) -> None:
    """An old archive's raw data set (no preamble, no file meta): the scan names the syntax
    pydicom read it in, as the decode did, instead of failing on the missing meta."""
    from pydicom import dcmwrite

    from phiscrub.pixels.faces import clean_faces
    from phiscrub.policy.pixels_config import PixelsConfig

    plain = np.full((1, 64, 96, 3), 128, np.uint8)
    src = _instance(plain)
    del src.file_meta
    raw = tmp_path / "raw.dcm"
    dcmwrite(raw, src, enforce_file_format=False, implicit_vr=False, little_endian=True)
    ds = dcmread(raw, force=True)
    assert "TransferSyntaxUID" not in getattr(ds, "file_meta", {})
    out = clean_faces(ds, PixelsConfig())
    assert out.performed and out.boxes == [] and out.syntax == ExplicitVRLittleEndian

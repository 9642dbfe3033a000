"""clean_pixel_data end to end: real ultrasound screens with burned-in patient text (the
deid-data package), real OCR on the output, pixels outside the boxes unchanged, truthful
header, and quarantine when the re-check fails."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from tests.conftest import TEST_FILES

deid_data = pytest.importorskip("deid_data")
US = Path(os.path.dirname(deid_data.__file__)) / "data" / "ultrasounds"


def _ocr_text(ds) -> str:
    from phiscrub.pixels.codec import decode_frames, decoded_layout
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.views import detect_text

    frames = decode_frames(ds)
    boxes = detect_text(frames, decoded_layout(ds).photometric, None, get_engine("rapidocr"))
    return " ".join(b.text for b in boxes)


def _run(cli, tmp_path: Path, src_file: Path, pixels: str = "{}"):
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    shutil.copy(src_file, src / src_file.name)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"options: [clean_pixel_data, clean_graphics]\npixels: {pixels}\n")
    res = cli("deidentify", src, tmp_path / "out", "-q", "--config", cfg, "-j", "1")
    return res, list((tmp_path / "out").rglob("*.dcm"))


@pytest.mark.parametrize(
    ("name", "phi"),
    [("GREYSCALE_IMAGE.dcm", ["PATIENTF", "00079241539", "08/29/1951", "CLEVELAN"]),
     ("RGB_IMAGE.dcm", ["DOWNTIME", "00047431395", "4/14/2020", "120907058", "CLEVELAND"])],
)
def test_ultrasound_burned_in_patient_text_is_gone(cli, tmp_path: Path, name: str, phi: list[str]) -> None:
    source = dcmread(US / name)
    before = _ocr_text(source).upper()
    assert any(p in before.replace(" ", "") for p in phi)  # the OCR does read the planted text
    res, outs = _run(cli, tmp_path, US / name)
    assert res.exit_code == 0, res.output
    out = dcmread(outs[0])
    after = re.sub(r"\s", "", _ocr_text(out).upper())
    for p in phi:
        assert p.replace(" ", "") not in after, p
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    # medical annotations survive in sensitive mode
    assert any(k in after for k in ("MHZ", "CM", "TIS", "MI"))
    # every pixel outside the recorded boxes is bit-identical
    from phiscrub.pixels.codec import decode_frames

    a, b = decode_frames(source), decode_frames(out)
    mask = np.ones(a.shape[1:3], dtype=bool)
    audit = (tmp_path / "out" / ".phiscrub" / "audit.jsonl").read_text()
    import json

    item = next(json.loads(x) for x in audit.splitlines() if '"event":"item"' in x)
    boxes = item["manifest"]["pixels"]["boxes"]
    assert boxes and all(set(bx) == {"frame", "x", "y", "w", "h", "reason"} for bx in boxes)
    for bx in boxes:
        mask[bx["y"]:bx["y"] + bx["h"], bx["x"]:bx["x"] + bx["w"]] = False
    assert np.array_equal(a[0][mask], b[0][mask])
    assert not any(p.lower() in audit.lower() for p in phi)


def test_modalities_without_burned_in_text_are_left_alone(cli, tmp_path: Path) -> None:
    res, outs = _run(cli, tmp_path, TEST_FILES / "CT_small.dcm")
    assert res.exit_code == 0
    out, src = dcmread(outs[0]), dcmread(TEST_FILES / "CT_small.dcm")
    assert out.PixelData == src.PixelData
    assert "113101" not in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert "BurnedInAnnotation" not in out or out.BurnedInAnnotation != "NO"


def test_failed_recheck_quarantines(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the re-check keeps finding identifying text, the file is not released."""
    from phiscrub.pixels import phi_match
    from phiscrub.pixels import redact as burned_in
    from phiscrub.pixels.boxes import Box

    real = phi_match.classify
    # failure injection: the re-check always sees one identifying region it cannot cover
    monkeypatch.setattr(phi_match, "classify", lambda *a, **k: real(*a, **k) + [Box(0, 0, 4, 4, None, "phi-name")])
    monkeypatch.setattr(burned_in, "_covered", lambda b, boxes, need=0.9: False)
    res, outs = _run(cli, tmp_path, US / "GREYSCALE_IMAGE.dcm")
    assert res.exit_code == 1 and "quarantined" in res.output
    assert outs == []


def test_kept_overlay_text_is_cleared(cli, tmp_path: Path) -> None:
    """clean_graphics keeps overlays; clean_pixel_data then clears identifying text in them."""
    import cv2
    from pydicom.pixels import pack_bits

    ds = dcmread(TEST_FILES / "examples_overlay.dcm")
    ds.PatientName = "Quartermain^Allan"
    plane = np.zeros((int(ds[0x60000010].value), int(ds[0x60000011].value)), dtype=np.uint8)
    cv2.putText(plane, "QUARTERMAIN", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 1, 3)
    cv2.putText(plane, "L", (400, 250), cv2.FONT_HERSHEY_SIMPLEX, 1.2, 1, 3)
    ds[0x60003000].value = pack_bits(plane.ravel())
    src = tmp_path / "src.dcm"
    ds.save_as(src)
    res, outs = _run(cli, tmp_path, src, "{text_redaction: sensitive}")
    assert res.exit_code == 0, res.output
    out = dcmread(outs[0])
    assert "QUARTERMAIN" not in _ocr_overlay(out)
    kept = out.overlay_array(0x6000)
    assert kept[200:270, 390:440].any()  # the laterality marker stays
    assert not kept[20:70, 15:330].any()


def _ocr_overlay(ds) -> str:
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.views import detect_text

    img = (ds.overlay_array(0x6000) * 255).astype(np.uint8)
    return " ".join(b.text for b in detect_text(img[None], "MONOCHROME2", None, get_engine("rapidocr"))).upper()


def test_recheck_rereads_what_is_left_of_a_sensitive_line(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a redaction that covers only half of each line: the re-check must read the
    rest again (not excuse it as text it saw before) and then cover it, or quarantine."""
    from phiscrub.pixels import redact as burned_in
    from phiscrub.pixels.boxes import Box

    monkeypatch.setattr(burned_in, "shrink_to_contrast", lambda bright, b: Box(b.x, b.y, max(1, b.w // 2), b.h, b.frame, b.reason))
    res, outs = _run(cli, tmp_path, US / "GREYSCALE_IMAGE.dcm")
    if res.exit_code == 0:
        after = re.sub(r"\s", "", _ocr_text(dcmread(outs[0])).upper())
        for p in ("00079241539", "08/29/1951", "PATIENTF"):
            assert p not in after
    else:
        assert "quarantined" in res.output and outs == []

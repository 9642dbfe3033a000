"""The opt-in tile scan redacts burned-in text on the low levels: words drawn across tile
edges (level 1: JPEG tiles against JPEGTables; level 2: LZW with a predictor) are gone
for the OCR afterwards, only the tiles they touched changed (re-encoded, appended, their
old bytes zeroed), every other tile is byte-identical, OpenSlide reads the output, and the
manifest names tiles and boxes, never the text. Copy mode and in place write the same bytes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import openslide
import pytest

from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi.aperio import VENDOR
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.slide import deidentify_slide
from phiscrub.wsi.tiff import TiffSlide
from tests.wsi.slide_factory import SCAN_WORDS, make_text_slide

KEYS = KeyRing(b"slide-test-key-0123456789")


def _ocr_words(path, level: int) -> str:
    from phiscrub.pixels.engines import get_engine
    from phiscrub.pixels.views import detect_text

    with openslide.OpenSlide(str(path)) as s:
        img = np.asarray(s.read_region((0, 0), level, s.level_dimensions[level]).convert("RGB"))
    return " ".join(b.text for b in detect_text(img, "RGB", None, get_engine("rapidocr"), read=True)).upper()


def _tiles(path) -> list[list[bytes]]:
    with TiffSlide(path) as t:
        return [[t.read(o, n) for o, n in t.tile_table(ifd).pairs()] for ifd in VENDOR.levels(t)]


def _planted(text: str) -> list[str]:
    return [w for w in ("JOHNSON", "4471") if w in text.replace(" ", "")]


@pytest.mark.slow
def test_tile_scan_redacts_text_across_tile_edges(tmp_path):
    src = make_text_slide(tmp_path / "Doe_Jane_text.svs").path
    for level in (1, 2):  # the planted words are there to be found (else the test proves nothing)
        assert _planted(_ocr_words(src, level)), level
    job = SlideJob(KEYS, from_mapping({"wsi": {"tile_scan": True, "tile_scan_levels": 2}}))
    m = deidentify_slide(src, tmp_path / "out", job)  # verify ran inside: it accepted exactly these tiles
    out = tmp_path / "out" / m.outputs[0]

    with openslide.OpenSlide(str(out)) as s:
        assert s.properties["openslide.vendor"] == "aperio" and s.level_count == 3
    for level in (1, 2):
        assert _planted(_ocr_words(out, level)) == [], level

    redacted = {(r["level"], r["tile"]) for r in m.tile_redactions if r.get("action") == "redacted"}
    assert {lv for lv, _ in redacted} == {1, 2}
    assert not [r for r in m.tile_redactions if "error" in r]
    # text straddles tile edges: on level 1 two neighbouring tiles, on level 2 all four
    assert {(1, 5), (1, 6)} <= redacted and {(2, 0), (2, 1), (2, 2), (2, 3)} <= redacted
    for r in m.tile_redactions:
        assert set(r) <= {"level", "tile", "action", "box", "error"} and len(r["box"]) == 4
    blob = json.dumps(m.tile_redactions).upper()
    assert not any(w in blob for w in SCAN_WORDS)

    before, after = _tiles(src), _tiles(out)
    assert after[0] == before[0]  # level 0 is never scanned
    data = out.read_bytes()
    with TiffSlide(src) as t:
        old_ranges = [t.tile_table(ifd).pairs() for ifd in VENDOR.levels(t)]
    for lv in (1, 2):
        assert len(after[lv]) == len(before[lv])
        for i, (a, b) in enumerate(zip(before[lv], after[lv], strict=True)):
            if (lv, i) in redacted:
                off, n = old_ranges[lv][i]
                assert a != b and data[off:off + n] == bytes(n)  # the old bytes are zeroed where they were
            else:
                assert a == b

    # in place: the same patches through the journal, so the same bytes
    work = tmp_path / "w"
    work.mkdir()
    victim = work / "Doe_Jane_text.svs"
    shutil.copyfile(src, victim)
    m2 = deidentify_slide(victim, work, SlideJob(KEYS, job.config, True))
    assert m2.outputs == m.outputs and m2.tile_redactions == m.tile_redactions
    assert (work / m2.outputs[0]).read_bytes() == data


def test_tile_scan_retries_tile_by_tile(tmp_path):
    """A detector that finds nothing leaves every tile where it was; a window whose OCR fails
    is retried tile by tile, and a tile that fails on its own is reported, by index."""
    from phiscrub.wsi.tiff import Rewriter
    from phiscrub.wsi.tile_scan import redact
    from tests.wsi.slide_factory import make_aperio

    p = make_aperio(tmp_path / "s.svs", gt450=True)  # levels 1024x768, 512x384, 256x192, 128x96
    calls: list[tuple[int, int]] = []

    def flaky(img):
        calls.append(img.shape[:2])
        if img.shape[0] > 256 or img.shape[1] > 256:
            raise RuntimeError("backend failure")
        return []

    def broken(img):
        raise RuntimeError("backend failure")

    with TiffSlide(p.path) as t:
        rw = Rewriter(t)
        res = redact(t, rw, VENDOR.levels(t), 3, detect=flaky)
        assert not res.changed and not rw.tail and not rw.zeros and not res.records
        assert (384, 512) in calls and (256, 256) in calls and (128, 256) in calls
        res = redact(t, Rewriter(t), VENDOR.levels(t), 3, detect=broken)
    errors = sorted((r["level"], r["tile"]) for r in res.records if r.get("error") == "ocr-failed")
    assert errors == [(1, i) for i in range(4)] + [(2, 0), (3, 0)]


def test_tile_scan_redacts_with_a_stub_detector(tmp_path):
    """The redaction path without OCR: a detector that reports one box across a tile edge
    of level 1 changes exactly the two tiles under it; verify accepts them."""
    from phiscrub.wsi import tile_scan

    src = make_text_slide(tmp_path / "t.svs").path
    orig = tile_scan.ocr_detector
    box = (480, 300, 64, 40)  # level-1 pixels: tiles 5 and 6 (row 1, columns 1 and 2)
    tile_scan.ocr_detector = lambda: (lambda img: [box] if img.shape[:2] == (768, 1024) else [])
    try:
        job = SlideJob(KEYS, from_mapping({"wsi": {"tile_scan": True, "tile_scan_levels": 2}}))
        m = deidentify_slide(src, tmp_path / "out", job)
    finally:
        tile_scan.ocr_detector = orig
    assert sorted({(r["level"], r["tile"]) for r in m.tile_redactions}) == [(1, 5), (1, 6)]
    before, after = _tiles(src), _tiles(tmp_path / "out" / m.outputs[0])
    changed = [(lv, i) for lv in range(3) for i in range(len(before[lv])) if before[lv][i] != after[lv][i]]
    assert changed == [(1, 5), (1, 6)]

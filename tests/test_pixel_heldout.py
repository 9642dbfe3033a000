"""The held-out burned-in text set (bench/pixel_heldout.py) must be labelled exactly, or the
scores bench/bench_pixels.py reports on it mean nothing: every PHI value burned is the value
in the header attribute it names (so 'sensitive' mode has it to match), every box lies in the
frame and no two fields share pixels, lines touch the frame's edge, coloured text is there,
and the bitmap font is burned without anti-aliasing (each pixel is the image's or the ink)."""

from __future__ import annotations

import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
heldout = pytest.importorskip("pixel_heldout")
bench = pytest.importorskip("bench_pixels")

FONTS = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"), Path("/usr/share/fonts/truetype/liberation2")
DATE_FORMS = ("%Y-%m-%d", "%m/%d/%Y", "%d.%m.%Y", "%d %b %Y", "%Y%m%d", "%b %d, %Y", "%d-%b-%Y", "%Y/%m/%d")
TIME_FORMS = ("%H:%M:%S", "%H:%M", "%I:%M %p")
COLOURS = {"cyan", "yellow", "green", "magenta"}
LIMIT = 8  # the first files hold grey and colour, anti-aliased and bitmap, MONOCHROME1, RLE and implicit VR


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if not all(p.exists() for p in FONTS):
        pytest.skip("fonts-dejavu and fonts-liberation2 are needed to build the set (see .ci/install)")
    out = tmp_path_factory.mktemp("heldout")
    # the files on a base from ../shared/real-data are left out where that folder is absent
    return out, heldout.build(out, 101, limit=LIMIT, skip_missing=True)


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[A-Z']+", text.upper())) - {"DR"}


def _in_header(text: str, tag: str, header: str) -> bool:
    """The burned text is the header's value, in one of the forms the set writes it."""
    if tag in ("PatientID", "AccessionNumber"):
        return text == header
    if tag == "InstitutionName":
        return text.upper() == header.upper()
    if tag in ("PatientName", "ReferringPhysicianName"):
        return bool(_tokens(text)) and _tokens(text) <= set(header.upper().split("^"))
    if tag.endswith("Date"):
        return any(_parse(text, f, "%Y%m%d") == header for f in DATE_FORMS)
    if tag.endswith("Time"):
        return any((t := _parse(text, f, "%H%M%S")) and header.startswith(t[: 6 if f.count(":") == 2 else 4]) for f in TIME_FORMS)
    raise AssertionError(f"unexpected tag {tag}")


def _parse(text: str, form: str, out: str) -> str | None:
    try:
        return datetime.strptime(text, form).strftime(out)
    except ValueError:
        return None


@pytest.mark.slow
def test_heldout_labels_are_exact(built: tuple[Path, dict]) -> None:
    out, labels = built
    files = labels["files"]
    assert LIMIT - 2 <= len(files) <= LIMIT
    touching = colour_lines = bitmap_lines = aa_blended = 0
    for name, entry in files.items():
        ds = pydicom.dcmread(out / name)
        rows, cols = entry["rows"], entry["cols"]
        assert (ds.Rows, ds.Columns) == (rows, cols)
        decoded = bench._frames(ds.pixel_array, ds)[0]  # (rows, cols, samples)
        base = heldout.load_base(entry["base"])[0].pixels[0].reshape(decoded.shape)
        fields = entry["fields"]
        for f in fields:
            x0, y0, x1, y1 = f["box"]
            assert 0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows, (name, f["text"], f["box"])
            for cx0, cy0, cx1, cy1 in f["chars"]:
                assert x0 <= cx0 < cx1 <= x1 and y0 <= cy0 < cy1 <= y1, (name, f["text"])
            if f["kind"] == "phi":
                assert _in_header(f["text"], f["tag"], str(ds[f["tag"]].value)), (name, f["text"], f["tag"], str(ds[f["tag"]].value))
            touching += x0 == 0 or y0 == 0 or x1 == cols or y1 == rows
            if entry["lossy"]:
                continue
            box = (slice(y0, y1), slice(x0, x1))
            burned = (decoded[box] != base[box]).any(axis=-1)
            if f["colour"] in COLOURS and entry["photometric"] == "RGB" and f["kind"] != "label":
                # each changed pixel is the image's blended toward the ink colour, some mostly ink
                src, ink = base[box][burned].astype(float), np.array(heldout.RGB_INK[f["colour"]], dtype=float)
                alpha = ((decoded[box][burned] - src) * (ink - src)).sum(-1) / np.maximum(1.0, ((ink - src) ** 2).sum(-1))
                assert np.abs(src + alpha[:, None] * (ink - src) - decoded[box][burned]).max() <= 1.5, (name, f["text"])
                assert alpha.max() >= 0.5, (name, f["text"])
                colour_lines += 1
            if f["style"] == "bitmap":  # no anti-aliasing: a pixel is the image's, or exactly the ink
                ink = np.array(f["ink"]).reshape(1, -1)
                assert burned.any() and (decoded[box][burned] == ink).all(), (name, f["text"])
                bitmap_lines += 1
            else:  # the check above has teeth: anti-aliased text blends
                aa_blended += len({tuple(v) for v in decoded[box][burned]}) > 1
        for i, a in enumerate(fields):
            for b in fields[i + 1:]:
                ax0, ay0, ax1, ay1 = a["box"]
                bx0, by0, bx1, by1 = b["box"]
                assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (name, a["text"], b["text"])
    assert touching and colour_lines and bitmap_lines and aa_blended


@pytest.mark.slow
def test_bench_pixels_scores_the_heldout_set_as_is(built: tuple[Path, dict]) -> None:
    """bench_pixels.py's scorer takes the labels unchanged: its oracle covers every PHI field
    and alters nothing else, its no-op covers none."""
    out, labels = built
    for name, entry in labels["files"].items():
        data = (out / name).read_bytes()
        inp, in_ds = bench._decode(data)
        oracle = bench.score_file(name, entry, inp, in_ds, bench.Oracle().redact(data, entry))
        noop = bench.score_file(name, entry, inp, in_ds, bench.NoOp().redact(data, entry))
        assert oracle.phi and all(oracle.phi) and oracle.nontext_altered == 0.0, name
        assert not any(noop.phi) and all(noop.non_phi), name

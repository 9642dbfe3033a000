"""TIFF-family slides end to end: generated slides of every format go through
deidentify_slide; outputs must open in OpenSlide as the same vendor, hold no planted value in
any byte or name, keep every tile byte, and treat label and macro as the policy says."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import openslide
import pytest

from phiscrub.errors import PhiscrubError
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi import registry
from phiscrub.wsi.journal import apply_in_place, journal_path, recover
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.slide import deidentify_slide
from phiscrub.wsi.tiff import TiffSlide
from tests.wsi.leak import scan_tree
from tests.wsi.slide_factory import MAKERS, SUFFIX

KEYS = KeyRing(b"slide-test-key-0123456789")
FORMATS = list(MAKERS)
FORMAT_NAME = {"gt450": "aperio"}


def job(label="remove", macro="remove", in_place=False) -> SlideJob:
    return SlideJob(KEYS, from_mapping({"wsi": {"label": label, "macro": macro}}), in_place)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("src")
    return {k: make(d / f"Doe_Jane_{k}{SUFFIX[k]}") for k, make in MAKERS.items()}


def tiles(path: Path, fmt: str) -> list[bytes]:
    mod = registry.detect(path)
    vendor = mod.vendor
    with TiffSlide(path) as t:
        return [t.read(o, n) for ifd in vendor.levels(t) for o, n in t.tile_table(ifd).pairs()]


@pytest.mark.parametrize("fmt", FORMATS)
def test_generated_slide_opens_as_its_vendor(sources, fmt):
    p = sources[fmt]
    with openslide.OpenSlide(str(p.path)) as s:
        assert s.properties["openslide.vendor"] == p.vendor
        assert set(p.associated) <= set(s.associated_images)
    assert registry.detect(p.path).name == FORMAT_NAME.get(fmt, fmt)
    # the planted values really are in the source (else the leak test proves nothing)
    assert set(scan_tree(p.path, p.values).get(p.path.name, [])) == set(p.values)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_no_leak_tiles_identical(sources, fmt, tmp_path):
    p = sources[fmt]
    out = tmp_path / "out"
    m = deidentify_slide(p.path, out, job())
    files = sorted(out.iterdir())
    assert [f.name for f in files] == m.outputs
    assert "doe" not in files[0].name.lower()
    assert scan_tree(out, p.values) == {}
    data = files[0].read_bytes()
    for sample in (p.label_sample, p.macro_sample):
        if sample:
            assert sample not in data
    with openslide.OpenSlide(str(files[0])) as s, openslide.OpenSlide(str(p.path)) as src:
        assert s.properties["openslide.vendor"] == p.vendor
        assert s.level_dimensions == src.level_dimensions
        assert "label" not in s.associated_images and "macro" not in s.associated_images
    assert tiles(files[0], fmt) == tiles(p.path, fmt)
    assert m.levels >= 1 and m.tiles >= 1


@pytest.mark.parametrize("fmt", ["aperio", "hamamatsu", "ventana", "philips", "leica"])
@pytest.mark.parametrize("action", ["blank", "replace", "redact"])
def test_associated_images_per_policy(sources, fmt, action, tmp_path):
    p = sources[fmt]
    label_action = "blank" if action == "redact" else action
    m = deidentify_slide(p.path, tmp_path, job(label_action, action))
    out = tmp_path / m.outputs[0]
    assert scan_tree(tmp_path, p.values) == {}
    with openslide.OpenSlide(str(out)) as s:
        for kind in ("label", "macro"):
            if kind not in p.associated:
                continue
            px = np.asarray(s.associated_images[kind].convert("RGB"))
            want = label_action if kind == "label" else action
            if want == "blank":
                assert px.max() <= 8
            elif want == "replace":
                assert (px > 200).mean() > 0.5 and (px < 50).any()
            else:
                third = px.shape[1] // 3
                assert px[:, :third].max() <= 8 and px[:, -third:].max() > 50  # label end black, tissue kept


def test_outputs_are_deterministic(sources, tmp_path):
    for fmt in ("aperio", "hamamatsu", "philips"):
        a = deidentify_slide(sources[fmt].path, tmp_path / "a", job(macro="replace"))
        b = deidentify_slide(sources[fmt].path, tmp_path / "b", job(macro="replace"))
        assert (tmp_path / "a" / a.outputs[0]).read_bytes() == (tmp_path / "b" / b.outputs[0]).read_bytes()


@pytest.mark.parametrize("fmt", ["aperio", "hamamatsu"])
def test_in_place(sources, fmt, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    src = work / f"Doe_Jane{SUFFIX[fmt]}"
    shutil.copyfile(sources[fmt].path, src)
    before = tiles(src, fmt)
    m = deidentify_slide(src, work, job(in_place=True))
    assert not src.exists() and [f.name for f in work.iterdir()] == m.outputs
    assert scan_tree(work, sources[fmt].values) == {}
    assert tiles(work / m.outputs[0], fmt) == before


def test_journal_recovery_back_and_forward(sources, tmp_path):
    src = tmp_path / "s.svs"
    shutil.copyfile(sources["aperio"].path, src)
    original = src.read_bytes()
    patches = [(100, b"XXXX"), (len(original) + 16, b"tail-bytes")]
    apply_in_place(src, patches, crash_after=1)  # a crash after the first patch
    assert journal_path(src).exists() and src.read_bytes() != original
    assert recover(src, "back") == "rolled-back"
    assert src.read_bytes() == original and not journal_path(src).exists()
    apply_in_place(src, patches, crash_after=0)
    assert recover(src, "forward") == "rolled-forward"
    data = src.read_bytes()
    assert data[100:104] == b"XXXX" and data.endswith(b"tail-bytes")
    journal_path(src).write_bytes(b"PHISCRUB-JOURNAL1 partial")
    assert recover(src) == "dropped"


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_slide_is_a_typed_error(sources, tmp_path, cut):
    data = sources["aperio"].path.read_bytes()
    bad = tmp_path / "bad.svs"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(PhiscrubError) as e:
        deidentify_slide(bad, tmp_path / "out", job())
    assert "doe" not in str(e.value).lower()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_not_a_slide_is_unsupported(tmp_path):
    f = tmp_path / "x.svs"
    f.write_bytes(b"II*\0" + b"\xff" * 64)
    with pytest.raises(PhiscrubError):
        deidentify_slide(f, tmp_path / "out", job())


@pytest.mark.parametrize("macro", ["blank", "replace", "redact"])
def test_gt450_label_removed_macro_kept_stays_macro(sources, macro, tmp_path):
    """A GT450's label and macro have no description; some OpenSlide builds name them by
    directory position. Removing the label while the macro stays must not make the macro
    the 5th directory (read as 'label' by such a reader): the label is blanked in place."""
    import tifffile

    p = sources["gt450"]
    m = deidentify_slide(p.path, tmp_path, job("remove", macro))
    out = tmp_path / m.outputs[0]
    assert scan_tree(tmp_path, p.values) == {}
    assert p.label_sample not in out.read_bytes()
    assert m.associated["label"] == "blank" and m.associated["macro"] == macro and m.notes
    with openslide.OpenSlide(str(out)) as s:  # this OpenSlide names them by NewSubfileType
        px = np.asarray(s.associated_images["macro"].convert("RGB"))
        assert px.shape[:2] == (200, 600) and bool((px > 50).any()) == (macro != "blank")
        assert not np.asarray(s.associated_images["label"].convert("RGB")).any()
    with tifffile.TiffFile(out) as tf:  # a positional reader: 5th directory label, 6th macro
        assert len(tf.pages) == 7
        assert tf.pages[5].subfiletype == 1 and not tf.pages[5].asarray().any()
        assert tf.pages[6].subfiletype == 9 and tf.pages[6].shape[:2] == (200, 600)


def test_gt450_label_and_macro_removed_are_unlinked(sources, tmp_path):
    m = deidentify_slide(sources["gt450"].path, tmp_path, job("remove", "remove"))
    assert m.associated["label"] == "remove" and not m.notes
    import tifffile

    with tifffile.TiffFile(tmp_path / m.outputs[0]) as tf:
        assert len(tf.pages) == 5

"""3DHISTECH MRXS: the generator makes what OpenSlide calls 'mirax'; the scrub leaves no planted
value in any output byte or name, keeps every tile byte, and follows the label/macro policy."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import openslide
import pytest

from phiscrub.errors import CorruptFile
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi import mrxs
from phiscrub.wsi.registry import SlideJob
from tests.wsi import mrxs_factory as mf
from tests.wsi.leak import scan_tree

KEYS = KeyRing(b"test-key-0123456789abcdef0123")


def _job(label: str = "remove", macro: str = "remove", in_place: bool = False) -> SlideJob:
    return SlideJob(KEYS, from_mapping({"wsi": {"label": label, "macro": macro}}), in_place)


@pytest.fixture
def slide(tmp_path: Path) -> Path:
    return mf.make_mrxs(tmp_path / "src", "case")


def _tree_hash(mrxs_path: Path) -> dict[str, str]:
    folder = mrxs.folder_of(mrxs_path)
    out = {mrxs_path.name: hashlib.sha256(mrxs_path.read_bytes()).hexdigest()}
    for p in sorted(folder.iterdir()):
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_generator_is_real_mirax(slide):
    with openslide.OpenSlide(str(slide)) as s:
        assert s.properties["openslide.vendor"] == "mirax"
        assert s.level_dimensions == ((256, 256), (128, 128), (64, 64))
        assert set(s.associated_images) == {"label", "macro", "thumbnail"}
        assert s.properties["mirax.GENERAL.SLIDE_NAME"] == mf.SLIDE_NAME
    assert mrxs.sniff(slide)
    # the generator really planted what the leak test looks for
    assert scan_tree(slide.parent, mf.PLANTED).keys() >= {"case/Slidedat.ini", "case/Index.dat", "case/Data0000.dat", "case/Data0001.dat"}


def test_sniff_is_by_content(tmp_path, slide):
    other = tmp_path / "x.mrxs"
    other.write_bytes(b"")
    assert not mrxs.sniff(other)  # no folder
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "Slidedat.ini").write_text("[OTHER]\nA = 1\n")
    assert not mrxs.sniff(other)
    renamed = tmp_path / "renamed.bin"  # the extension is not what makes it MIRAX
    shutil.copy(slide, renamed)
    shutil.copytree(mrxs.folder_of(slide), tmp_path / "renamed")
    assert mrxs.sniff(renamed)


@pytest.mark.parametrize("label,macro", [("remove", "remove"), ("blank", "blank"), ("replace", "redact")])
def test_copy_leaves_no_planted_value_and_keeps_tiles(tmp_path, slide, label, macro):
    dst = tmp_path / "out" / "ANON01.mrxs"
    dst.parent.mkdir()
    job = _job(label, macro)
    before = _tree_hash(slide)
    manifest = mrxs.scrub(slide, dst, job)
    assert _tree_hash(slide) == before  # the source is untouched in copy mode
    assert scan_tree(dst.parent, mf.PLANTED) == {}
    assert scan_tree(dst.parent, [mf.SLIDE_ID[:12], mf.SLIDE_ID[-12:]]) == {}
    assert mrxs.verify(slide, dst, job) == []
    with openslide.OpenSlide(str(slide)) as a, openslide.OpenSlide(str(dst)) as b:
        assert b.properties["openslide.vendor"] == "mirax"
        assert a.level_dimensions == b.level_dimensions
        for level in range(a.level_count):
            w, h = a.level_dimensions[level]
            assert a.read_region((0, 0), level, (w, h)).tobytes() == b.read_region((0, 0), level, (w, h)).tobytes()
        assocs = set(b.associated_images)
        if label == "remove":
            assert "label" not in assocs and "macro" not in assocs and "thumbnail" not in assocs
        else:
            assert {"label", "macro", "thumbnail"} <= assocs
            assert b.associated_images["label"].size == a.associated_images["label"].size
            lab = b.associated_images["label"].convert("L")
            if label == "blank":
                assert lab.getextrema()[1] <= 16
            else:
                assert lab.getextrema() [1] > 200 and lab.getextrema()[0] < 60  # white label, dark text
            assert b.associated_images["macro"].convert("L").getextrema()[1] <= 16
        assert b.properties["mirax.GENERAL.SLIDE_ID"] != mf.SLIDE_ID
        assert len(b.properties["mirax.GENERAL.SLIDE_ID"]) == len(mf.SLIDE_ID)
        assert b.properties["mirax.GENERAL.SLIDE_CREATIONDATETIME"][4] == "."  # shifted, same format
    text = repr(manifest)
    assert all(v.lower() not in text.lower() for v in mf.PLANTED)
    assert manifest.tiles == 16 + 4 + 1 and manifest.levels == 3
    assert manifest.fields["GENERAL.SLIDE_NAME"] == "remove"
    assert manifest.fields["GENERAL.SLIDE_CREATIONDATETIME"] == "shift_date"


def test_deterministic(tmp_path, slide):
    a, b = tmp_path / "a" / "S.mrxs", tmp_path / "b" / "S.mrxs"
    for d in (a, b):
        d.parent.mkdir()
        mrxs.scrub(slide, d, _job("replace", "blank"))
    assert _tree_hash(a) == _tree_hash(b)


def test_in_place(tmp_path, slide):
    job = _job()
    ref = tmp_path / "ref" / "case.mrxs"
    ref.parent.mkdir()
    mrxs.scrub(slide, ref, job)
    original = tmp_path / "orig"
    shutil.copytree(slide.parent, original)
    mrxs.scrub(slide, slide, _job(in_place=True))
    assert scan_tree(slide.parent, mf.PLANTED) == {}
    assert mrxs.verify(original / "case.mrxs", slide, job) == []
    assert not list(slide.parent.rglob("*journal*"))
    with openslide.OpenSlide(str(slide)) as s:
        assert "label" not in s.associated_images


def test_verify_catches_a_leak(tmp_path, slide):
    dst = tmp_path / "out" / "A.mrxs"
    dst.parent.mkdir()
    job = _job()
    mrxs.scrub(slide, dst, job)
    ini = mrxs.folder_of(dst) / "Slidedat.ini"
    ini.write_bytes(ini.read_bytes().replace(b"PROJECT_NAME = ", f"PROJECT_NAME = {mf.PROJECT}".encode()))
    problems = mrxs.verify(slide, dst, job)
    assert any("properties" in p for p in problems)
    assert all(mf.PROJECT not in p for p in problems)


def test_verify_catches_changed_tiles(tmp_path, slide):
    dst = tmp_path / "out" / "A.mrxs"
    dst.parent.mkdir()
    job = _job()
    mrxs.scrub(slide, dst, job)
    data = mrxs.folder_of(dst) / "Data0000.dat"
    blob = bytearray(data.read_bytes())
    blob[-10] ^= 0xFF
    data.write_bytes(bytes(blob))
    assert "tile bytes differ from the source" in mrxs.verify(slide, dst, job)


@pytest.mark.parametrize("damage", ["index_header", "index_truncated", "ini_missing_id", "bad_filename", "no_datafile"])
def test_corrupt_input_is_typed(tmp_path, slide, damage):
    folder = mrxs.folder_of(slide)
    ini = folder / "Slidedat.ini"
    if damage == "index_header":
        (folder / "Index.dat").write_bytes(b"01.02" + b"0" * 32 + (folder / "Index.dat").read_bytes()[37:])
    elif damage == "index_truncated":
        (folder / "Index.dat").write_bytes((folder / "Index.dat").read_bytes()[:60])
    elif damage == "ini_missing_id":
        ini.write_bytes(ini.read_bytes().replace(b"SLIDE_ID = ", b"SLIDE_XX = "))
    elif damage == "bad_filename":
        ini.write_bytes(ini.read_bytes().replace(b"FILE_0 = Data0000.dat", b"FILE_0 = ../../etc/passwd"))
    else:
        (folder / "Data0001.dat").unlink()
    with pytest.raises(CorruptFile) as e:
        mrxs.scrub(slide, tmp_path / "o.mrxs", _job("blank", "blank"))
    msg = str(e.value)
    assert "\n" not in msg and all(v.lower() not in msg.lower() for v in mf.PLANTED)


def test_registered_with_the_registry():
    from phiscrub.wsi import registry

    assert "mrxs" in registry.MODULES
    fmt = [f for f in registry._FORMATS if f.name == "mrxs"]  # registered on import, as every vendor module
    assert len(fmt) == 1 and fmt[0].scrub is mrxs.scrub and fmt[0].verify is mrxs.verify and fmt[0].sniff is mrxs.sniff

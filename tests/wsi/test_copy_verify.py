"""Copy mode at disk speed: the in-kernel copy writes the same bytes by every route it can
take, and the verifier's tile sample (every tile of the smallest level, 1 in 64 of the
others, see phiscrub.wsi.verify) catches what it promises; ``wsi.verify_tiles: full``
catches a changed tile anywhere."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from phiscrub.errors import ConfigError
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.policy.wsi_config import parse_wsi
from phiscrub.wsi import registry, tiff, verify
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.tiff import TiffSlide
from tests.wsi.slide_factory import APERIO_PHI, TILE, jpeg, label_image, macro_image, tissue

KEYS = KeyRing(b"copy-verify-test-key-0123456789")


def job(verify_tiles: str = "sample") -> SlideJob:
    return SlideJob(KEYS, from_mapping({"wsi": {"verify_tiles": verify_tiles}}))


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """An Aperio SVS with enough tiles that a 1-in-64 sample leaves most of them out:
    level 0 of 24x24 tiles, level 1 (the smallest) of 6x6, from pre-encoded JPEG tiles
    (each one distinct, so a tile compared at the wrong place would differ)."""
    path = tmp_path_factory.mktemp("cv") / "Doe_Jane.svs"
    base = [jpeg(tissue(TILE, TILE, s), 70) for s in range(4)]

    def stream(n: int, level: int):
        for i in range(n):  # a distinct comment per tile: every tile's bytes are unique
            t = base[i % len(base)]
            yield t[:2] + b"\xff\xfe\x00\x0a" + f"{level:02d}{i:06d}".encode() + t[2:]

    head = "Aperio Image Library v12.0.15"
    pairs = "|".join(f"{k} = {v}" for k, v in APERIO_PHI.items())
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for level, side in enumerate((24, 6)):
            px = side * TILE
            desc = (f"{head}\r\n{24 * TILE}x{24 * TILE} [0,0 {px}x{px}] (256x256) JPEG/RGB Q=70|AppMag = 40|MPP = 0.25|{pairs}"
                    if level == 0 else f"{head}\r\n{24 * TILE}x{24 * TILE} -> {px}x{px} - |AppMag = 40")
            tw.write(stream(side * side, level), shape=(px, px, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                     photometric="rgb", metadata=None, description=desc)
        tw.write(label_image("JANE DOE"), photometric="rgb", compression="lzw", metadata=None, subfiletype=1,
                 description=f"{head}\r\nlabel 300x240")
        tw.write(macro_image("JANE DOE"), photometric="rgb", compression="jpeg", metadata=None, subfiletype=9,
                 description=f"{head}\r\nmacro 600x200")
    return path


@pytest.fixture()
def scrubbed(slide, tmp_path):
    """(source, output, format, the scrub's record): the slide through copy mode."""
    fmt = registry.detect(slide)
    assert fmt is not None and fmt.name == "aperio"
    out = tmp_path / "out.svs"
    fmt.scrub(slide, out, job())
    memo = verify.recall(out)
    assert memo is not None
    return slide, out, fmt, memo


def _levels(path: Path, fmt) -> list[tuple[np.ndarray, np.ndarray]]:
    with TiffSlide(path) as t:
        return [(t.tile_table(i).offsets.copy(), t.tile_table(i).counts.copy()) for i in fmt.vendor.levels(t)]


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x5A]))


def _verify(src: Path, out: Path, fmt, memo, mode: str) -> list[str]:
    verify.remember(out, *memo)  # verify pops the record: put it back for each call
    return verify.verify_tiff(src, out, job(mode), fmt.vendor)


def _tile_bytes_ok(src: Path, out: Path, fmt, memo, mode: str) -> bool:
    """Only the tile comparison (the rest of the verifier does not look at tile bytes)."""
    with TiffSlide(src) as s, TiffSlide(out) as o:
        lv = fmt.vendor.levels(s)
        return verify.compare_tiles(s, o, lv, [o.tile_table(i) for i in fmt.vendor.levels(o)], memo[1], mode)


def test_clean_copy_verifies_in_both_modes(scrubbed):
    src, out, fmt, memo = scrubbed
    assert _verify(src, out, fmt, memo, "sample") == []
    assert _verify(src, out, fmt, memo, "full") == []


def test_sample_catches_every_tile_of_the_smallest_level(scrubbed):
    src, out, fmt, memo = scrubbed
    offs, cnts = _levels(out, fmt)[-1]
    assert len(offs) == 36
    for i in range(len(offs)):  # a byte changed in the middle of each tile in turn
        at = int(offs[i]) + int(cnts[i]) // 2
        _flip(out, at)
        assert not _tile_bytes_ok(src, out, fmt, memo, "sample"), f"smallest-level tile {i} missed"
        _flip(out, at)
    at = int(offs[17]) + int(cnts[17]) // 2
    _flip(out, at)
    assert "tile bytes differ from the source" in _verify(src, out, fmt, memo, "sample")


def test_sample_is_the_documented_one_and_full_catches_the_rest(scrubbed):
    src, out, fmt, memo = scrubbed
    offs, cnts = _levels(out, fmt)[0]
    with TiffSlide(src) as s:
        levels = fmt.vendor.levels(s)
        mask = verify.sample_mask(s.tile_table(levels[0]), memo[1][0].digest, verify.patch_sites(s, levels))
    n = len(offs)
    assert n == 576
    phase = int(memo[1][0].digest[:8], 16) % verify.SAMPLE_STRIDE
    assert mask[phase::verify.SAMPLE_STRIDE].all() and mask[0] and mask[-1]
    assert mask.sum() < n // 8  # a sample, not the level
    # a sampled tile is caught in sample mode
    at = int(offs[phase]) + int(cnts[phase]) // 2
    _flip(out, at)
    assert not _tile_bytes_ok(src, out, fmt, memo, "sample")
    _flip(out, at)
    # an unsampled tile is not (by design), and full mode catches it
    i = int(np.flatnonzero(~mask)[len(np.flatnonzero(~mask)) // 2])
    at = int(offs[i]) + int(cnts[i]) - 1  # its last byte
    _flip(out, at)
    assert _tile_bytes_ok(src, out, fmt, memo, "sample")
    assert "tile bytes differ from the source" in _verify(src, out, fmt, memo, "full")
    assert not _tile_bytes_ok(src, out, fmt, memo, "full")
    _flip(out, at)
    assert _verify(src, out, fmt, memo, "full") == []


def test_tiles_next_to_patched_places_are_sampled(scrubbed):
    """The tiles on either side of each directory, value and associated image (where the
    patches land) are in the sample: a patch that overran would be seen there."""
    src, _out, fmt, memo = scrubbed
    with TiffSlide(src) as s:
        levels = fmt.vendor.levels(s)
        starts, ends = verify.patch_sites(s, levels)
        tb = s.tile_table(levels[0])
        mask = verify.sample_mask(tb, memo[1][0].digest, (starts, ends))
        order = np.argsort(tb.offsets)
        for a, e in zip(starts.tolist(), ends.tolist(), strict=True):
            before = [j for j in order if tb.offsets[j] < a]
            after = [j for j in order if tb.offsets[j] >= e]
            if before:
                assert mask[before[-1]]
            if after:
                assert mask[after[0]]


def test_copy_routes_write_the_same_bytes(slide, tmp_path, monkeypatch):
    """copy_file_range, then sendfile, then pread/pwrite: each route (and a fallback in the
    middle of a copy) gives the source's bytes with the patches over them."""
    data = slide.read_bytes()
    patches = [(100, b"ABCD"), (len(data) + 16, b"tail")]
    want = bytearray(data) + bytes(16) + b"tail"
    want[100:104] = b"ABCD"
    monkeypatch.setattr(tiff, "COPY_CHUNK", 64 << 10)  # many chunks, the last one short
    outs = {"kernel": tmp_path / "a"}
    tiff.apply_copy(slide, outs["kernel"], patches)

    calls = {"n": 0}

    def refuses_after_two(sfd, dfd, off, n):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.EXDEV, "cross-device")
        return os.copy_file_range(sfd, dfd, n, off, off)

    monkeypatch.setattr(tiff, "_by_copy_file_range", refuses_after_two)
    outs["sendfile"] = tmp_path / "b"
    tiff.apply_copy(slide, outs["sendfile"], patches)

    def refuses(*_a):
        raise OSError(errno.ENOSYS, "no")

    monkeypatch.setattr(tiff, "_by_copy_file_range", refuses)
    monkeypatch.setattr(tiff, "_by_sendfile", refuses)
    outs["pread"] = tmp_path / "c"
    tiff.apply_copy(slide, outs["pread"], patches, durable=False)
    for route, p in outs.items():
        assert p.read_bytes() == bytes(want), route


def test_copy_error_that_is_not_a_refusal_propagates(slide, tmp_path, monkeypatch):
    def full_disk(*_a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tiff, "_by_copy_file_range", full_disk)
    with pytest.raises(OSError) as e:
        tiff.apply_copy(slide, tmp_path / "x", [])
    assert e.value.errno == errno.ENOSPC


def test_verify_tiles_config():
    assert parse_wsi({}).verify_tiles == "sample"
    assert parse_wsi({"verify_tiles": "full"}).verify_tiles == "full"
    assert parse_wsi({"verify_tiles": "full"}).describe() == parse_wsi({}).describe()  # output bytes do not change
    with pytest.raises(ConfigError, match="verify_tiles"):
        parse_wsi({"verify_tiles": "some"})


def test_full_mode_in_small_pieces(scrubbed, monkeypatch):
    """The full comparison's buffered path, read in many short pieces: a clean copy passes,
    a changed byte anywhere in a run of tiles fails."""
    src, out, fmt, memo = scrubbed
    monkeypatch.setattr(verify, "CHUNK", 4096)
    monkeypatch.setattr(verify, "SMALL", 0)
    assert _tile_bytes_ok(src, out, fmt, memo, "full")
    offs, cnts = _levels(out, fmt)[0]
    for i in (0, 300, len(offs) - 1):
        at = int(offs[i]) + int(cnts[i]) - 1
        _flip(out, at)
        assert not _tile_bytes_ok(src, out, fmt, memo, "full"), i
        _flip(out, at)

"""Slide benchmark: a >= 2 GB synthetic Aperio SVS through phiscrub in copy mode and in
place, against `cp` of the same file, in one run; plus the peak RSS of this process.

The slide is written fast by repeating a few pre-encoded JPEG tiles (tifffile, streaming),
with a label and macro, into bench/out/ (git-ignored). Copy mode includes verification
(OpenSlide, tifffile, PHI scan, every tile byte compared with the source); in-place runs on
a fresh copy and verifies what it can without a source (tile offsets unchanged).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from tests.wsi.slide_factory import APERIO_PHI, TILE, jpeg, label_image, macro_image, make_aperio, tissue  # noqa: E402

from phiscrub.keys import KeyRing  # noqa: E402
from phiscrub.policy.config import from_mapping  # noqa: E402
from phiscrub.wsi.registry import SlideJob  # noqa: E402
from phiscrub.wsi.slide import deidentify_slide  # noqa: E402

OUT = ROOT / "bench" / "out" / "wsi"
TARGET = int(float(os.environ.get("BENCH_WSI_GB", "2.1")) * (1 << 30))


def build(path: Path) -> None:
    tiles = [jpeg(tissue(TILE, TILE, s), 95) for s in range(8)]
    per = sum(len(t) for t in tiles) / len(tiles)
    side = int(np.ceil(np.sqrt(TARGET / per)))  # tiles per side of level 0
    pairs = "|".join(f"{k} = {v}" for k, v in APERIO_PHI.items())
    head = "Aperio Image Library v12.0.15"

    def stream(n: int):
        for i in range(n):
            yield tiles[i % len(tiles)]

    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        s = side
        first = True
        while s >= 1:
            px = s * TILE
            desc = f"{head}\r\n{side * TILE}x{side * TILE} [0,0 {px}x{px}] (256x256) JPEG/RGB Q=95|AppMag = 40|MPP = 0.25|{pairs}"
            tw.write(stream(s * s), shape=(px, px, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                     photometric="rgb", metadata=None, description=desc if first else f"{head}\r\n{px}x{px}")
            first = False
            s //= 4
        tw.write(label_image("JANE DOE"), photometric="rgb", compression="lzw", metadata=None,
                 description=f"{head}\r\nlabel 300x240")
        tw.write(macro_image("JANE DOE"), photometric="rgb", compression="jpeg", metadata=None,
                 description=f"{head}\r\nmacro 600x200")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    src = OUT / "bench_src.svs"
    if not src.exists() or src.stat().st_size < TARGET * 0.95:
        print(f"building the synthetic SVS ({TARGET / 2**30:.1f} GiB)...", flush=True)
        # in a child process, so that the peak RSS below is the de-identification's alone
        t = timed(lambda: subprocess.run([sys.executable, __file__, "--build", str(src)], check=True))
        print(f"  built in {t:.1f}s", flush=True)
    size = src.stat().st_size
    job = SlideJob(KeyRing(b"bench-key-0123456789abcdef"), from_mapping({}))
    cp_dst, copy_dir, inplace_dir = OUT / "cp.svs", OUT / "copy", OUT / "inplace"
    for p in (cp_dst,):
        p.unlink(missing_ok=True)
    shutil.rmtree(copy_dir, ignore_errors=True)
    shutil.rmtree(inplace_dir, ignore_errors=True)
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # same cache state for all
    t_cp = timed(lambda: subprocess.run(["cp", str(src), str(cp_dst)], check=True))
    cp_dst.unlink()
    t_copy = timed(lambda: deidentify_slide(src, copy_dir, job))
    inplace_dir.mkdir()
    victim = inplace_dir / "victim.svs"
    shutil.copyfile(src, victim)
    small = inplace_dir / "small.svs"
    make_aperio(small)
    os.sync()  # the copy's dirty pages are not the in-place rewrite's to flush
    in_place = SlideJob(job.keys, job.config, True)
    t_inplace = timed(lambda: deidentify_slide(victim, inplace_dir, in_place))
    t_small = timed(lambda: deidentify_slide(small, inplace_dir, in_place))
    small_size = sum(f.stat().st_size for f in inplace_dir.iterdir() if f.stat().st_size < size // 2)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"slide: {size / 2**30:.2f} GiB Aperio SVS")
    print(f"cp:                 {t_cp:7.2f} s")
    print(f"phiscrub copy mode: {t_copy:7.2f} s  ({t_copy / t_cp:.2f}x cp; scrub + verify incl. every tile byte)")
    print(f"phiscrub in place:  {t_inplace:7.2f} s  ({t_inplace / t_cp:.3f}x cp); "
          f"same on a {small_size / 2**20:.1f} MiB slide: {t_small:.2f} s")
    print(f"peak RSS of this process: {rss:.0f} MiB")
    shutil.rmtree(copy_dir, ignore_errors=True)
    shutil.rmtree(inplace_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--build":
        build(Path(sys.argv[2]))
    else:
        main()

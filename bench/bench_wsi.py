"""Slide benchmark: copy mode as a whole `phiscrub deidentify` process against `cp` + `sync`
of the same file, what verification costs, in-place mode, and peak memory at two sizes.

The slide (BENCH_WSI_GB GiB, default 2.1) is a synthetic Aperio SVS written fast by
repeating a few pre-encoded JPEG tiles (tifffile, streaming), with a label and a macro, into
bench/out/wsi/ (git-ignored) and reused. Every timed run is a subprocess, spawn to exit:

- ``cp SRC DST && sync``;
- ``python -m phiscrub deidentify -q SRC DIR`` in copy mode (key from PHISCRUB_KEY, default
  options: verification with ``wsi.verify_tiles: sample``), as typed (a process pool of one
  worker per core) and with ``-j 1`` (the slide in the CLI's own process). The CLI ends
  with ``os.sync()`` and the slide's copy is fsynced: both commands end with their bytes
  on disk.

Same page cache for both: before every run the previous outputs are deleted, ``sync`` runs,
and the source is read whole (``cat SRC > /dev/null``), so the source is cached and nothing
of either output is (dropping caches needs privileges this bench does not assume). After
one untimed warm-up of each command, three rounds (BENCH_WSI_ROUNDS) run them in rotated
order; medians are reported with every run's time.

Verification's cost is measured in this process: the scrub (plan, copy, patches, fsync) and
``verify`` timed apart, in the sampled and the full (every tile byte) modes. The fixed cost
of a process is phiscrub's time on a 0.1 MiB slide. In place runs once as a process and
once in this process, against a 0.1 MiB slide. Peak RSS is each ``-j 1`` process's own
(``wait4``), on this slide and on one an eighth of its size.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from tests.wsi.slide_factory import APERIO_PHI, TILE, jpeg, label_image, macro_image, make_aperio, tissue  # noqa: E402

from phiscrub.keys import KeyRing  # noqa: E402
from phiscrub.policy.config import from_mapping  # noqa: E402
from phiscrub.wsi import registry, verify  # noqa: E402
from phiscrub.wsi.registry import SlideJob  # noqa: E402
from phiscrub.wsi.slide import deidentify_slide  # noqa: E402

OUT = ROOT / "bench" / "out" / "wsi"
TARGET = int(float(os.environ.get("BENCH_WSI_GB", "2.1")) * (1 << 30))
KEY = "bench-key-0123456789abcdef0123456789"
ROUNDS = int(os.environ.get("BENCH_WSI_ROUNDS", "3"))


def build(path: Path, target: int) -> None:
    tiles = [jpeg(tissue(TILE, TILE, s), 95) for s in range(8)]
    per = sum(len(t) for t in tiles) / len(tiles)
    side = int(np.ceil(np.sqrt(target / per)))  # tiles per side of level 0
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


def ensure(path: Path, target: int) -> Path:
    if not path.exists() or abs(path.stat().st_size - target) > target * 0.1:
        print(f"building a {target / 2**30:.2f} GiB synthetic SVS...", flush=True)
        subprocess.run([sys.executable, __file__, "--build", str(path), str(target)], check=True)
    return path


def env() -> dict[str, str]:
    e = dict(os.environ, PHISCRUB_KEY=KEY)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [e.get("PYTHONPATH")] if p])
    return e


def settle(src: Path, *gone: Path) -> None:
    """The same cache state before every run: old outputs deleted and flushed, the source
    read whole (cached), a moment for the deletes' discards."""
    for p in gone:
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    os.sync()
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)
    time.sleep(1.0)


def run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one subprocess, spawn to exit."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode:
        raise SystemExit(f"{cmd[:4]} failed ({p.returncode}): {err[-2000:]}")
    return wall, ru.ru_maxrss / 1024


def phiscrub(*args: str) -> list[str]:
    return [sys.executable, "-m", "phiscrub", "deidentify", "-q", *args]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    src = ensure(OUT / "bench_src.svs", TARGET)
    small = ensure(OUT / "bench_src_eighth.svs", TARGET // 8)
    size = src.stat().st_size
    cp_dst, copy_dir = OUT / "cp.svs", OUT / "copy"
    full_cfg = OUT / "verify_full.yaml"
    full_cfg.write_text("wsi:\n  verify_tiles: full\n")
    load = os.getloadavg()[0]

    # ---- whole processes: one untimed warm-up of each, then rounds in rotated order --------
    tools = [("cp", ["sh", "-c", 'cp "$1" "$2" && sync', "sh", str(src), str(cp_dst)]),
             ("default", phiscrub(str(src), str(copy_dir))), ("j1", phiscrub("-j", "1", str(src), str(copy_dir)))]
    times: dict[str, list[float]] = {name: [] for name, _ in tools}
    rss = []
    for r in range(-1, ROUNDS):
        for name, cmd in tools[max(r, 0):] + tools[:max(r, 0)]:
            settle(src, cp_dst, copy_dir)
            t, m = run(cmd)
            if r < 0:
                continue  # warm-up
            times[name].append(t)
            if name == "j1":  # wait4 counts a pool's workers too; compare like with like
                rss.append(m)
        if r >= 0:
            print(f"  round {r + 1}: cp+sync {times['cp'][-1]:.2f} s, phiscrub copy mode {times['default'][-1]:.2f} s, "
                  f"with -j 1 {times['j1'][-1]:.2f} s", flush=True)
    # the fixed cost of a process (start-up, imports, state, audit, syncs): a 0.1 MiB slide
    fixed_src = OUT / "fixed.svs"
    make_aperio(fixed_src)
    fixed: dict[str, list[float]] = {"default": [], "j1": []}
    for _ in range(ROUNDS):
        for name, extra in (("default", []), ("j1", ["-j", "1"])):
            settle(fixed_src, copy_dir)
            fixed[name].append(run(phiscrub(*extra, str(fixed_src), str(copy_dir)))[0])
    settle(src, cp_dst, copy_dir)
    t_full, rss_full = run(phiscrub("-j", "1", "-c", str(full_cfg), str(src), str(copy_dir)))
    settle(small, cp_dst, copy_dir)
    t_small, rss_small = run(phiscrub("-j", "1", str(small), str(copy_dir)))

    # ---- verification's share, in this process ------------------------------------------
    keys = KeyRing(KEY.encode())
    fmt = registry.detect(src)
    assert fmt is not None
    work = OUT / "split"
    settle(src, copy_dir, work)
    work.mkdir()
    dst = work / "out.svs"
    t0 = time.perf_counter()
    man = fmt.scrub(src, dst, SlideJob(keys, from_mapping({})))
    t_scrub = time.perf_counter() - t0
    memo = verify.recall(dst)
    assert memo is not None
    t_verify = {}
    for mode in ("sample", "full"):
        verify.remember(dst, *memo)
        t0 = time.perf_counter()
        problems = fmt.verify(src, dst, SlideJob(keys, from_mapping({"wsi": {"verify_tiles": mode}})))
        t_verify[mode] = time.perf_counter() - t0
        assert not problems, problems

    # ---- in place: in process against a small slide, then a whole process --------------
    inplace_dir = OUT / "inplace"
    settle(src, work, inplace_dir)
    inplace_dir.mkdir()
    victim = inplace_dir / "victim.svs"
    tiny = inplace_dir / "tiny.svs"
    make_aperio(tiny)
    tiny_size = tiny.stat().st_size
    in_place = SlideJob(keys, from_mapping({}), True)
    shutil.copyfile(src, victim)
    os.sync()  # the copy's dirty pages are not the in-place rewrite's to flush
    t0 = time.perf_counter()
    deidentify_slide(victim, inplace_dir, in_place)
    t_inplace = time.perf_counter() - t0
    t0 = time.perf_counter()
    deidentify_slide(tiny, inplace_dir, in_place)
    t_tiny = time.perf_counter() - t0
    held = OUT / "inplace_src"  # the CLI refuses a SRC inside DST
    settle(src, inplace_dir, held)
    held.mkdir()
    shutil.copyfile(src, held / "victim.svs")
    os.sync()
    t_inplace_proc, _ = run(phiscrub("-j", "1", "--in-place", str(held / "victim.svs"), str(inplace_dir)))

    med = {k: statistics.median(v) for k, v in times.items()}
    runs = lambda xs: ", ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    print(f"slide: {size / 2**30:.2f} GiB Aperio SVS, {man.levels} levels, {man.tiles} tiles; "
          f"{os.cpu_count()} cores, load average {load:.2f} at start")
    print(f"cp + sync:                       median {med['cp']:6.2f} s  ({runs(times['cp'])})")
    print(f"phiscrub copy mode (process):    median {med['default']:6.2f} s  ({runs(times['default'])})"
          f"  = {med['default'] / med['cp']:.2f}x cp + sync")
    print(f"  same with -j 1 (no pool):      median {med['j1']:6.2f} s  ({runs(times['j1'])})"
          f"  = {med['j1'] / med['cp']:.2f}x")
    print(f"  fixed cost, the same on a 0.1 MiB slide: median {statistics.median(fixed['default']):.2f} s, "
          f"-j 1 {statistics.median(fixed['j1']):.2f} s")
    print(f"  -j 1, verify_tiles: full:      {t_full:6.2f} s (one run) = {t_full / med['cp']:.2f}x")
    print(f"  in process: scrub (plan, copy, patches, fsync) {t_scrub:.2f} s; verify {t_verify['sample']:.3f} s sampled, "
          f"{t_verify['full']:.3f} s full ({t_verify['sample'] / med['j1']:.1%} / {t_verify['full'] / med['j1']:.1%} of a -j 1 run)")
    print(f"phiscrub in place, -j 1 (process): {t_inplace_proc:.2f} s; in process {t_inplace:.3f} s, "
          f"and {t_tiny:.3f} s on a {tiny_size / 2**20:.1f} MiB slide")
    print(f"peak RSS of a copy-mode process (-j 1): {max(rss):.0f} MiB on {size / 2**30:.2f} GiB ({man.tiles} tiles), "
          f"{rss_small:.0f} MiB on {small.stat().st_size / 2**30:.2f} GiB ({rss_full:.0f} MiB with full verify)")
    for p in (cp_dst, copy_dir, work, inplace_dir, held, full_cfg, fixed_src):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build":
        build(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()

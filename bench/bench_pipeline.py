"""End-to-end pipeline benchmark: 2,000 small DICOM files and a few small slides through
`phiscrub deidentify`, with the local process pool (2 workers) and with a Dask cluster (a
scheduler and 2 worker processes on loopback), against `cp -r` of the same tree as the
physical bound, in one run. Each figure is a whole CLI run (start-up, discovery, state,
audit, verification included); the Dask cluster is started before its clock starts.

Data is generated into bench/out/pipeline/ (git-ignored): the test corpus generator (one
template varied in UIDs and names) and the slide factory (Aperio, NDPI, Leica, Ventana).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pipeline.corpus import make_corpus  # noqa: E402
from tests.pipeline.servers import free_port  # noqa: E402
from tests.wsi.slide_factory import make_aperio, make_leica, make_ndpi, make_ventana  # noqa: E402

OUT = ROOT / "bench" / "out" / "pipeline"
N = int(os.environ.get("BENCH_PIPELINE_FILES", "2000"))
KEY = "bench-key-0123456789abcdef0123"


def build(src: Path) -> int:
    make_corpus(src / "dicom", N)
    slides = src / "slides"
    slides.mkdir(parents=True)
    for i, make in enumerate((make_aperio, make_ndpi, make_leica, make_ventana)):
        make(slides / f"slide_{i}.{make.__name__[5:]}")
    return sum(1 for p in src.rglob("*") if p.is_file())


def timed(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return time.perf_counter() - t


def dask_cluster(env: dict) -> tuple[str, list[subprocess.Popen]]:
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    time.sleep(1.0)
    procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--host", "127.0.0.1",
                                   "--no-dashboard", "--memory-limit", "0"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    with Client(address, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    return address, procs


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    src = OUT / "src"
    n = build(src)
    env = {**os.environ, "PHISCRUB_KEY": KEY}
    phiscrub = [sys.executable, "-m", "phiscrub", "deidentify"]
    subprocess.run(["sync"], check=False)
    cp = timed(["cp", "-r", str(src), str(OUT / "cp")])
    pool = timed([*phiscrub, str(src), str(OUT / "pool"), "-q", "-j", "2"], env)
    address, procs = dask_cluster(env)
    try:
        dask = timed([*phiscrub, str(src), str(OUT / "dask"), "-q", "--scheduler", address], env)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(20)
    outs = {k: sum(1 for p in (OUT / k).rglob("*") if p.is_file() and ".phiscrub" not in p.parts) for k in ("pool", "dask")}
    print(f"pipeline: {N} DICOM files + 4 slides ({n} files), {os.cpu_count()} cores")
    print(f"{'run':<28}{'seconds':>9}{'files/s':>10}{'x cp -r':>10}")
    for name, s in (("cp -r (physical bound)", cp), ("phiscrub, local pool (2)", pool), ("phiscrub, Dask (2 workers)", dask)):
        print(f"{name:<28}{s:>9.2f}{n / s:>10.0f}{s / cp:>10.1f}")
    print(f"Dask / pool time: {dask / pool:.2f}; outputs: pool {outs['pool']}, dask {outs['dask']}")


if __name__ == "__main__":
    main()

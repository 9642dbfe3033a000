"""Header de-identification throughput: phiscrub side by side with plain pydicom and its peers.

Why this exists: phiscrub makes two performance claims - at least 3x the fastest open-source
peer, and within 2x of a bare pydicom read+write per core - and claims like these only mean
something when every tool is timed on the same files, in the same run, on the same machine,
with the same pydicom and a warm page cache. Numbers from separate runs or other machines do
not compare, so this script never reports a tool it did not just run itself.

Why memory is measured separately, in fresh processes, at 25/50/100% of the corpus: a
per-worker leak (caches keyed by UID or patient, accumulated audit state) is invisible in one
snapshot and only shows as peak RSS that grows with the number of files a worker has seen.
A fresh process per size keeps one measurement from inheriting the previous one's heap.

Usage: python bench/bench_header.py [--files N] [--workdir DIR] [--workers W] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pydicom import dcmread

from phiscrub.demo import Patient, make_study
from phiscrub.keys import KeyRing
from phiscrub.pipeline.runner import ItemResult, Job, default_workers, process_path, run
from phiscrub.policy.config import from_mapping

FILES_PER_STUDY = 10  # n_ct + n_mr + 1 SR
N_CT, N_MR = 5, 4
BENCH_KEY = b"bench-key-0123456789abcdef"
TARGET_PEER_SPEEDUP = 3.0  # phiscrub (1 process) vs the fastest peer
TARGET_FLOOR_RATIO = 2.0  # plain pydicom per core / phiscrub per core, at most (issue 15, item 10)
FLAT_MIB = 8.0  # peak RSS growth 25% -> 100% below this counts as flat
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out"

PeerFn = Callable[[Path, Path], None]


@dataclass
class Timing:
    tool: str
    files: int
    seconds: float
    workers: int = 1
    failures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    written: int = 0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else float("nan")

    @property
    def per_core(self) -> float:
        return self.rate / self.workers


# --------------------------------------------------------------------------- corpus


def bench_patient(i: int) -> Patient:
    """Every identifying value differs per patient, so UID maps, name caches and date
    offsets see realistic variety instead of one patient repeated."""
    return Patient(
        name=f"Family{i:04d}^Given{i:04d}^Middle{i % 7}",
        pid=f"MRN{100000 + i}",
        birth=f"{1930 + i % 70}{1 + i % 12:02d}{1 + i % 28:02d}",
        accession=f"ACC{500000 + i}",
        address=f"{10 + i} Benchmark Street, Townsville {i % 50}",
        phone=f"555-{i % 1000:03d}-{(i * 7919) % 10000:04d}",
        institution=f"General Hospital Number {i % 17}",
        physician=f"Referrer{i % 23:02d}^Janet",
        operator=f"Operator{i % 11:02d}^Chidi",
        study_date=f"20{10 + i % 14}{1 + i % 12:02d}{1 + i % 28:02d}",
        other_id=f"OTHERID{900000 + i}",
        station=f"CTSTATION-ROOM{i % 9}",
        serial=f"SN-{10000000 + i}",
    )


def build_corpus(corpus: Path, n_files: int) -> list[Path]:
    studies = max(1, math.ceil(n_files / FILES_PER_STUDY))
    expected = studies * FILES_PER_STUDY
    existing = sorted(corpus.rglob("*.dcm")) if corpus.exists() else []
    if len(existing) == expected:
        print(f"corpus: reusing {expected} files in {corpus}")
        return existing
    if corpus.exists():
        shutil.rmtree(corpus)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(studies):
            make_study(corpus, bench_patient(i), n_ct=N_CT, n_mr=N_MR, folder=f"study{i:05d}")
    paths = sorted(corpus.rglob("*.dcm"))
    print(f"corpus: generated {len(paths)} files ({studies} studies) in {time.perf_counter() - t0:.1f}s -> {corpus}")
    if len(paths) != expected:
        raise SystemExit(f"corpus: expected {expected} files, found {len(paths)}")
    return paths


# --------------------------------------------------------------------------- peers


def peer_pydicom() -> PeerFn:
    def fn(src: Path, dst: Path) -> None:
        dcmread(src).save_as(dst)

    return fn


def peer_dicognito() -> PeerFn:
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer()  # one instance for the run: consistent pseudonyms across files

    def fn(src: Path, dst: Path) -> None:
        ds = dcmread(src)
        anonymizer.anonymize(ds)
        ds.save_as(dst)

    return fn


def peer_deid() -> PeerFn:
    os.environ.setdefault("MESSAGELEVEL", "0")  # deid logs through its own bot; keep it quiet
    from deid.config import DeidRecipe
    from deid.dicom import replace_identifiers

    recipe = DeidRecipe()  # the packaged default recipe (deid.dicom)

    def fn(src: Path, dst: Path) -> None:
        # deid saves under output_folder/<basename of the input>, which is dst by construction.
        out = replace_identifiers([str(src)], deid=recipe, save=True, output_folder=str(dst.parent), overwrite=True)
        if not out:
            raise RuntimeError("deid returned no output")

    return fn


def peer_dicom_anonymizer() -> PeerFn:
    from dicomanonymizer import anonymize_dicom_file

    def fn(src: Path, dst: Path) -> None:
        anonymize_dicom_file(str(src), str(dst))

    return fn


PEERS: dict[str, tuple[str, Callable[[], PeerFn]]] = {
    "dicognito": ("dicognito", peer_dicognito),
    "deid": ("deid", peer_deid),
    "dicom-anonymizer": ("dicom-anonymizer", peer_dicom_anonymizer),
}


def count_outputs(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*.dcm") if not p.name.startswith("."))


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    os.sync()  # start each timing with no dirty pages left by the tool before it
    return folder


def time_peer(tool: str, fn: PeerFn, paths: Sequence[Path], corpus: Path, out: Path) -> Timing:
    fresh(out)
    failures = 0
    reasons: Counter[str] = Counter()
    t0 = time.perf_counter()
    for src in paths:
        dst = out / src.relative_to(corpus)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            fn(src, dst)
        except (Exception, SystemExit) as e:  # noqa: BLE001 - one bad file must not end the benchmark
            failures += 1
            reasons[f"{type(e).__name__}: {str(e)[:100]}"] += 1
    seconds = time.perf_counter() - t0
    return Timing(tool, len(paths), seconds, 1, failures, reasons, count_outputs(out))


# --------------------------------------------------------------------------- phiscrub


def make_job(dst: Path) -> Job:
    # The default options without clean_pixel_data: the peers here change headers only, and
    # the default's 'auto' now screens every CT and MR slice for burned-in text (about 25 ms
    # each), which bench_pixels.py and bench_screen.py time on their own.
    config = from_mapping({"options": ["retain_longitudinal_modified_dates"]})
    return Job(config, KeyRing(BENCH_KEY), config.policy.digest(), dst)


class Tally:
    """Counts results as they arrive instead of keeping them: each ItemResult carries a
    manifest, and holding a thousand of them would show up as a fake leak in the RSS numbers."""

    def __init__(self) -> None:
        self.seen = 0
        self.reasons: Counter[str] = Counter()

    def __call__(self, r: ItemResult) -> None:
        self.seen += 1
        if r.status != "done":
            self.reasons[f"{r.status}/{r.category}: {r.reason}"] += 1

    @property
    def failures(self) -> int:
        return sum(self.reasons.values())


def time_phiscrub_single(paths: Sequence[Path], out: Path) -> Timing:
    job = make_job(fresh(out))
    tally = Tally()
    t0 = time.perf_counter()
    for p in paths:
        tally(process_path(str(p), job))
    seconds = time.perf_counter() - t0
    return Timing("phiscrub", len(paths), seconds, 1, tally.failures, tally.reasons, count_outputs(out))


def time_phiscrub_pool(paths: Sequence[Path], out: Path, workers: int) -> Timing:
    job = make_job(fresh(out))
    tally = Tally()
    t0 = time.perf_counter()
    run(paths, job, workers, tally)  # pool start-up and shutdown are part of the cost
    seconds = time.perf_counter() - t0
    if tally.seen != len(paths):
        tally.reasons["missing result"] += len(paths) - tally.seen
    return Timing("phiscrub pool", len(paths), seconds, workers, tally.failures, tally.reasons, count_outputs(out))


def time_prepass(paths: Sequence[Path], out: Path, workers: int) -> Timing:
    """The job-wide pre-pass alone (every header read, shared UIDs checked), as the CLI runs
    it before any transform: its cost is paid once per job on top of the pool's."""
    from phiscrub.pipeline.planning import plan_job
    from phiscrub.pipeline.storage import Item

    job = make_job(fresh(out))
    items = [Item(str(p), p.stat().st_size, str(p.stat().st_mtime_ns)) for p in paths]

    def run_work(elements, work, on_crash, on_result) -> None:
        run(elements, job, workers, on_result, work=work, on_crash=on_crash)

    t0 = time.perf_counter()
    plan = plan_job(items, job, run_work, lambda k: None, lambda rel: False)
    seconds = time.perf_counter() - t0
    missing = len(paths) - plan.stats["headers"]
    reasons = Counter({"no header": missing}) if missing else Counter()
    return Timing("pre-pass", len(paths), seconds, workers, missing, reasons, 0)


# --------------------------------------------------------------------------- memory


def peak_rss_kib() -> int:
    """This process image's peak RSS. On Linux that is VmHWM: ru_maxrss would also carry the
    peak of the (much larger) benchmark process that launched us, because the kernel keeps the
    rusage maximum across exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return ru_maxrss_kib(resource.RUSAGE_SELF)


def ru_maxrss_kib(who: int) -> int:
    rss = resource.getrusage(who).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere


def rss_child(list_file: Path, dst: Path, workers: int) -> None:
    """Runs in a fresh interpreter: processes the listed files and prints peak RSS as JSON."""
    warnings.simplefilter("ignore")
    paths = [Path(line) for line in list_file.read_text().splitlines() if line]
    job = make_job(fresh(dst))
    tally = Tally()
    if workers <= 1:
        tally(process_path(str(paths[0]), job))  # lazy imports and first-call caches
        baseline = peak_rss_kib()
        for p in paths[1:]:
            tally(process_path(str(p), job))
        peak = peak_rss_kib()
    else:
        baseline = peak_rss_kib()  # the parent the workers fork from
        run(paths, job, workers, tally)
        peak = ru_maxrss_kib(resource.RUSAGE_CHILDREN)  # largest worker, after they are reaped
    print(json.dumps({"files": len(paths), "baseline_kib": baseline, "peak_kib": peak,
                      "ru_maxrss_kib": ru_maxrss_kib(resource.RUSAGE_SELF), "failures": tally.failures}))


def measure_rss(paths: Sequence[Path], workdir: Path, fraction: float, workers: int) -> dict[str, int]:
    subset = paths[: max(1, round(len(paths) * fraction))]
    tag = f"{int(fraction * 100)}-w{workers}"
    list_file = workdir / f"rss-{tag}.txt"
    list_file.write_text("\n".join(str(p) for p in subset) + "\n")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(list_file),
           "--rss-dst", str(workdir / f"rss-out-{tag}"), "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"rss child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    shutil.rmtree(workdir / f"rss-out-{tag}", ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- report


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def print_table(rows: list[Timing], ref: Timing) -> None:
    head = f"{'tool':<20} {'workers':>7} {'files':>6} {'failed':>6} {'written':>7} {'seconds':>8} {'files/s':>8} " \
           f"{'files/s/core':>12} {'phiscrub(1p)/tool':>17}"
    print(head)
    print("-" * len(head))
    for t in rows:
        if t.note:
            print(f"{t.tool:<20} {t.note}")
            continue
        ratio = ref.rate / t.rate
        print(f"{t.tool:<20} {t.workers:>7} {t.files:>6} {t.failures:>6} {t.written:>7} {t.seconds:>8.2f} {t.rate:>8.1f} "
              f"{t.per_core:>12.1f} {ratio:>16.2f}x")


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--files", type=int, default=1000, help="minimum corpus size (rounded up to whole studies of 10)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help="corpus and outputs (default bench/out/)")
    ap.add_argument("--workers", type=int, default=default_workers(), help="phiscrub pool size (default: all cores)")
    ap.add_argument("--repeat", type=int, default=1, help="time each tool this many times and keep the fastest (default 1)")
    ap.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--rss-dst", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.rss_child is not None:
        rss_child(args.rss_child, args.rss_dst, args.workers)
        return 0

    warnings.simplefilter("ignore")  # every tool pays the same (zero) cost for pydicom warnings
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    workers = max(1, args.workers)
    print(f"python {platform.python_version()} | pydicom {version('pydicom')} | phiscrub {version('phiscrub')} | "
          f"dicognito {version('dicognito')} | deid {version('deid')} | dicom-anonymizer {version('dicom-anonymizer')}")
    print(f"cores available: {default_workers()} | phiscrub pool workers: {workers} | workdir: {workdir}")

    corpus = workdir / "corpus"
    paths = build_corpus(corpus, args.files)
    total_bytes = sum(len(p.read_bytes()) for p in paths)  # also warms the page cache for every tool alike
    print(f"corpus: {len(paths)} files, {total_bytes / 2**20:.1f} MiB\n")

    outputs = workdir / "outputs"
    rows: list[Timing] = []

    def report(t: Timing) -> None:
        if t.note:
            print(f"  {t.tool:<18} {t.note}", flush=True)
        else:
            print(f"  {t.tool:<18} {t.seconds:7.2f}s  {t.rate:7.1f} files/s  failed {t.failures}", flush=True)
        rows.append(t)

    repeat = max(1, args.repeat)

    def best(measure: Callable[..., Timing], *measure_args: Any) -> Timing:
        return min((measure(*measure_args) for _ in range(repeat)), key=lambda t: t.seconds)

    print(f"timing (corpus generation excluded; best of {repeat}):")
    floor = best(time_peer, "pydicom read+write", peer_pydicom(), paths, corpus, outputs / "pydicom")
    report(floor)
    single = best(time_phiscrub_single, paths, outputs / "phiscrub")
    report(single)
    pool = best(time_phiscrub_pool, paths, outputs / "phiscrub-pool", workers)
    report(pool)
    pre = best(time_prepass, paths, outputs / "prepass", workers)
    report(pre)
    print(f"  pre-pass cost: {pre.seconds / pool.seconds:.2f}x of the pool's run ({workers} workers)", flush=True)
    peers: list[Timing] = []
    for tool, (dist, factory) in PEERS.items():
        try:
            fn = factory()  # imports and one-off setup are not timed
        except Exception as e:  # noqa: BLE001 - a missing peer is reported, not fatal
            t = Timing(tool, len(paths), 0.0, note=f"skipped: {type(e).__name__}: {e} (pip install {dist})")
        else:
            t = best(time_peer, tool, fn, paths, corpus, outputs / tool)
            peers.append(t)
        report(t)

    print("\nresults:")
    print_table(rows, single)

    for t in rows:
        if t.reasons:
            print(f"\nfailures for {t.tool} ({t.failures}):")
            for reason, n in t.reasons.most_common(10):
                print(f"  {n:5d}  {reason}")

    print("\ntargets:")
    live = [p for p in peers if p.failures < p.files]
    if live:
        fastest = max(live, key=lambda p: p.rate)
        speedup = single.rate / fastest.rate
        pool_speedup = pool.rate / fastest.rate
        print(f"  phiscrub as run by default ({workers} workers, one per core) vs fastest peer ({fastest.tool}, "
              f"{fastest.rate:.1f} files/s; the peers have no parallel mode): {pool_speedup:.2f}x, "
              f"target >= {TARGET_PEER_SPEEDUP:.1f}x -> {verdict(pool_speedup >= TARGET_PEER_SPEEDUP)}")
        print(f"    (phiscrub in 1 process vs the same peer: {speedup:.2f}x)")
    else:
        print("  phiscrub vs fastest peer: no peer ran, cannot judge")
    per_core_ratio = floor.rate / pool.per_core
    print(f"  plain pydicom per core ({floor.rate:.1f} files/s) / phiscrub per core ({pool.per_core:.1f} files/s, "
          f"{workers} workers): {per_core_ratio:.2f}x, target <= {TARGET_FLOOR_RATIO:.1f}x -> "
          f"{verdict(per_core_ratio <= TARGET_FLOOR_RATIO)}")
    single_ratio = floor.rate / single.rate
    print(f"  plain pydicom / phiscrub, both in 1 process: {single_ratio:.2f}x, target <= {TARGET_FLOOR_RATIO:.1f}x -> "
          f"{verdict(single_ratio <= TARGET_FLOOR_RATIO)}")
    print("    (the per-core figure with the pool is lower on a 2-core machine because the parent process, which"
          " streams results and writes the audit, shares the cores with the workers)")
    if single.failures or pool.failures:
        print(f"  note: phiscrub did not release {single.failures} (1 process) / {pool.failures} (pool) files; "
              "their time is still counted")
    print("  note: phiscrub's time includes its release check (a PHI probe of each source, the written output read "
          "back from disk and scanned) and a batched os.sync of the outputs; the peers do neither.")

    print("\nmemory: phiscrub peak RSS per worker (VmHWM), each corpus size in a fresh process")
    print(f"{'corpus':>7} {'files':>6} {'1 process: after 1st file':>26} {'peak':>10} {'ru_maxrss':>10} "
          f"{f'pool ({workers} workers): max worker peak':>34}")
    peaks: list[float] = []
    for fraction in (0.25, 0.5, 1.0):
        one = measure_rss(paths, workdir, fraction, 1)
        many = measure_rss(paths, workdir, fraction, workers) if workers > 1 else None
        peaks.append(one["peak_kib"] / 1024)
        pool_txt = f"{many['peak_kib'] / 1024:.1f} MiB" if many and many["peak_kib"] else "n/a"
        fails = one["failures"] + (many["failures"] if many else 0)
        print(f"{int(fraction * 100):>6}% {one['files']:>6} {one['baseline_kib'] / 1024:>22.1f} MiB "
              f"{one['peak_kib'] / 1024:>6.1f} MiB {one['ru_maxrss_kib'] / 1024:>6.1f} MiB {pool_txt:>34}"
              + (f"  ({fails} not released)" if fails else ""), flush=True)
    growth = peaks[-1] - peaks[0]
    print(f"  1-process peak growth 25% -> 100%: {growth:+.1f} MiB "
          f"({'flat' if growth < FLAT_MIB else 'GROWING'}; threshold {FLAT_MIB:.0f} MiB)")
    print("  note: ru_maxrss of an exec'd child also holds the launching benchmark process's peak (Linux keeps the "
          "rusage maximum across exec), so the peak column uses VmHWM. Pool workers are forked: their RSS counts "
          "library pages shared with the parent only once touched; read the pool column down, not across.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

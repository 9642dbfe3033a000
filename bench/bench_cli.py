"""End-to-end header throughput: the released CLIs, whole process, side by side.

Why this exists beside bench_header.py: that script times phiscrub's engine in-process, which
hides what a user waits for - interpreter and import start-up, the job-wide pre-pass, the
state database, the audit, the release check, the verify gate and the pool's start and stop.
Here every tool is one subprocess started from the shell's point of view and timed from spawn
to exit, on the same corpus, in one run:

- plain pydicom: one process reading and writing every file (the floor: no de-identification);
- dicognito's CLI (one process: it has no parallel mode);
- `phiscrub deidentify` with `--workers 1` and `--workers 2`.

The corpus has the shape real header-only archives have: per study, CT and MR series, a text
SR and a secondary capture, with patient names in free-text descriptors and comments. The
phiscrub config turns on clean_descriptors, clean_structured_content and
retain_longitudinal_modified_dates, with clean_pixel_data off: dicognito does no OCR, so the
comparison is header work against header work.

Rounds alternate the tools' order (rotated each round) so that a slow phase of the machine
does not land on one tool; each tool's figure is the median of its rounds.

Usage: python bench/bench_cli.py [--files 999] [--rounds 3] [--workdir DIR] [--corpus DIR]

``--corpus DIR`` times a folder we did not make instead (bench/README.md names the public set
used, the JSL set at the commit issue 16 pins, kept in the ignored bench/out/).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench_header import bench_patient, verdict, version  # the same patients, and the same report helpers
from pydicom import dcmread
from pydicom.uid import generate_uid

from phiscrub.demo import Patient, make_study

N_CT, N_MR = 4, 3
FILES_PER_STUDY = N_CT + N_MR + 2  # + SR + SC
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
BENCH_KEY = "bench-key-0123456789abcdef"
TARGET_PEER = 3.0  # phiscrub (default workers) files/s over dicognito's, at least
TARGET_FLOOR = 2.0  # phiscrub time per core over plain pydicom's, at most
TARGET_SCALING = 1.6  # 2 workers' files/s over 1 worker's, at least
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "out" / "cli"
CONFIG = """profile: basic
options: [clean_descriptors, clean_structured_content, retain_longitudinal_modified_dates]
"""
# The floor: the same files read and written by pydicom alone, in one fresh interpreter.
PYDICOM_SCRIPT = """
import sys, warnings
from pathlib import Path
from pydicom import dcmread
warnings.simplefilter("ignore")
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for p in sorted(src.rglob("*.dcm")):
    out = dst / p.relative_to(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    dcmread(p).save_as(out)
"""


def add_secondary_capture(folder: Path, ct: Path, p: Patient) -> Path:
    """A screen-capture-like SC in the study: the CT's header and pixels under the SC class,
    with a burned-in-annotation flag and a derivation text naming the patient."""
    ds = dcmread(ct)
    sop = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SC_CLASS
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    ds.SeriesNumber = 98
    ds.DerivationDescription = f"Screen save of {p.name.replace('^', ' ')} ({p.pid}) for the tumour board"
    ds.SeriesDescription = f"Key image for {p.name.split('^')[0]}"
    out = folder / f"{p.name.split('^')[0]}_SC_001.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out


def build_corpus(corpus: Path, n_files: int) -> list[Path]:
    studies = max(1, math.ceil(n_files / FILES_PER_STUDY))
    expected = studies * FILES_PER_STUDY
    existing = sorted(corpus.rglob("*.dcm")) if corpus.exists() else []
    if len(existing) == expected:
        print(f"corpus: reusing {expected} files in {corpus}")
        return existing
    shutil.rmtree(corpus, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(studies):
            p = bench_patient(i)
            _, paths = make_study(corpus, p, n_ct=N_CT, n_mr=N_MR, folder=f"study{i:05d}")
            add_secondary_capture(paths[0].parent, paths[0], p)
    paths = sorted(corpus.rglob("*.dcm"))
    if len(paths) != expected:
        raise SystemExit(f"corpus: expected {expected} files, found {len(paths)}")
    print(f"corpus: generated {len(paths)} files ({studies} studies: {N_CT} CT, {N_MR} MR, 1 SR, 1 SC each)")
    return paths


@dataclass
class Tool:
    name: str
    argv: list[str]
    workers: int = 1
    outputs: str = "*.dcm"
    seconds: list[float] = field(default_factory=list)
    written: int = 0
    failed: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and ".phiscrub" not in p.parts)


def time_once(tool: Tool, dst: Path, env: dict[str, str]) -> None:
    shutil.rmtree(dst, ignore_errors=True)
    os.sync()  # no dirty pages left by the tool before this one
    argv = [a.replace("{DST}", str(dst)) for a in tool.argv]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    seconds = time.perf_counter() - t0
    # every file of the corpus is releasable: any exit but 0, or nothing written, is a failed run
    if proc.returncode != 0:
        tool.failed = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    tool.seconds.append(seconds)
    tool.written = count(dst) if dst.exists() else 0
    if not tool.written:
        tool.failed = tool.failed or "nothing written"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--files", type=int, default=999, help="corpus size, rounded up to whole studies of 9")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; each tool's median is reported")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--corpus", type=Path, default=None,
                    help="time an existing folder of DICOM files (a public set kept under bench/out/) instead of the "
                         "generated corpus; --files is then ignored")
    args = ap.parse_args(argv)

    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if args.corpus is not None:
        corpus = args.corpus.resolve()
        paths = sorted(corpus.rglob("*.dcm"))
        if not paths:
            raise SystemExit(f"corpus: no .dcm files under {corpus}")
        print(f"corpus: {len(paths)} files of {corpus} (not generated)")
    else:
        corpus = workdir / "corpus"
        paths = build_corpus(corpus, args.files)
    mib = sum(p.stat().st_size for p in paths) / 2**20  # stat only; the first round warms the cache
    config = workdir / "bench.yaml"
    config.write_text(CONFIG)
    env = dict(os.environ, PHISCRUB_KEY=BENCH_KEY, PYTHONWARNINGS="ignore")

    py = sys.executable
    # the installed console script, as a user runs it (its own start-up included)
    phiscrub = [str(Path(py).with_name("phiscrub")), "deidentify", str(corpus), "{DST}", "-c", str(config), "-q"]
    tools = [
        Tool("pydicom read+write", [py, "-c", PYDICOM_SCRIPT, str(corpus), "{DST}"]),
        Tool("dicognito", [py, "-m", "dicognito", str(corpus), "-o", "{DST}", "--quiet"]),
        Tool("phiscrub -j 1", [*phiscrub, "-j", "1"], workers=1),
        Tool("phiscrub -j 2", [*phiscrub, "-j", "2"], workers=2),
    ]
    if version("dicognito") == "not installed":
        tools = [t for t in tools if t.name != "dicognito"]
        print("dicognito: not installed (pip install -e '.[bench]'); its row and the peer target are skipped")

    print(f"python {sys.version.split()[0]} | pydicom {version('pydicom')} | phiscrub {version('phiscrub')} | "
          f"dicognito {version('dicognito')} | cores {os.cpu_count()}")
    print(f"corpus: {len(paths)} files, {mib:.1f} MiB; config: {CONFIG.strip().splitlines()[1]}\n")

    # an untimed warm-up of each tool: page cache, .pyc files, the first import of every module
    for t in tools:
        time_once(t, workdir / "out" / t.name.replace(" ", "_"), env)
        t.seconds.clear()
    for r in range(max(1, args.rounds)):
        order = tools[r % len(tools):] + tools[: r % len(tools)]
        line = []
        for t in order:
            time_once(t, workdir / "out" / t.name.replace(" ", "_"), env)
            line.append(f"{t.name} {t.seconds[-1]:.2f}s")
        print(f"round {r + 1}: " + " | ".join(line), flush=True)

    print(f"\n{'tool':<20} {'workers':>7} {'written':>7} {'median s':>9} {'files/s':>8} {'runs':>24}")
    for t in tools:
        runs = " ".join(f"{s:.2f}" for s in t.seconds)
        print(f"{t.name:<20} {t.workers:>7} {t.written:>7} {t.median:>9.2f} {len(paths) / t.median:>8.1f} {runs:>24}"
              + (f"  FAILED {t.failed}" if t.failed else ""))

    by = {t.name: t for t in tools}
    floor, one, two = by["pydicom read+write"], by["phiscrub -j 1"], by["phiscrub -j 2"]
    print("\ntargets (whole-process wall time, start-up, pre-pass, release check and verify gate included):")
    if "dicognito" in by:
        peer = by["dicognito"].median / two.median
        print(f"  phiscrub -j 2 files/s / dicognito's: {peer:.2f}x, target >= {TARGET_PEER:.1f}x -> "
              f"{verdict(peer >= TARGET_PEER)}   (-j 1: {by['dicognito'].median / one.median:.2f}x)")
    per_core = one.median / floor.median
    print(f"  phiscrub -j 1 time / plain pydicom's (one core each): {per_core:.2f}x, target <= {TARGET_FLOOR:.1f}x -> "
          f"{verdict(per_core <= TARGET_FLOOR)}   (-j 2, per core: {2 * two.median / floor.median:.2f}x)")
    scaling = one.median / two.median
    print(f"  -j 2 files/s / -j 1's: {scaling:.2f}x, target >= {TARGET_SCALING:.1f}x -> "
          f"{verdict(scaling >= TARGET_SCALING)}")
    bad = [t.name for t in tools if t.failed]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

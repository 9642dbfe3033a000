"""Load test of `phiscrub serve`: concurrent uploads to POST /v1/deidentify on loopback.

A real uvicorn server in its own process (so its peak memory is its own: VmHWM), driven by
CONCURRENCY client threads over keep-alive connections, with a bounded number of requests
and a wall-clock cap. Each request uploads a distinct small CT file with planted PHI (the
test corpus generator); each response is checked for status 200 and scanned for the
planted values of its file. Reports requests/s, p50 and p99 latency, errors (must be 0),
leaks (must be 0) and the server's peak RSS. Results also go to bench/out/service.json.

Knobs: BENCH_SERVICE_REQUESTS (200), BENCH_SERVICE_CONCURRENCY (8), BENCH_SERVICE_SECONDS (60).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pipeline.corpus import make_corpus  # noqa: E402
from tests.service.serve import serve  # noqa: E402

OUT = ROOT / "bench" / "out" / "service"
REQUESTS = int(os.environ.get("BENCH_SERVICE_REQUESTS", "200"))
CONCURRENCY = int(os.environ.get("BENCH_SERVICE_CONCURRENCY", "8"))
CAP_S = float(os.environ.get("BENCH_SERVICE_SECONDS", "60"))


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def main() -> int:
    shutil.rmtree(OUT, ignore_errors=True)
    corpus = make_corpus(OUT / "corpus", REQUESTS, per_study=10, seed=1)
    bodies = [p.read_bytes() for p in corpus.files]
    needles = [(p.parent.name.split("_")[0].encode(), p.parent.name.split("_")[1].encode()) for p in corpus.files]
    with serve(OUT / "server") as server:
        local = threading.local()

        def one(i: int) -> tuple[float, int, bool]:
            c = getattr(local, "client", None)
            if c is None:
                c = local.client = server.client(timeout=CAP_S)
            if time.perf_counter() - start > CAP_S:
                return 0.0, -1, False
            t0 = time.perf_counter()
            try:
                r = c.post("/v1/deidentify", content=bodies[i], headers={"Content-Type": "application/dicom"})
                code, body = r.status_code, r.content
            except Exception:  # noqa: BLE001 - a failed request is an error, counted
                code, body = 0, b""
            leak = any(n in body for n in needles[i])
            return time.perf_counter() - t0, code, leak

        server.client().get("/healthz")
        start = time.perf_counter()
        with ThreadPoolExecutor(CONCURRENCY) as ex:
            results = list(ex.map(one, range(REQUESTS)))
        wall = time.perf_counter() - start
        peak_kib = server.peak_rss_kib()
        log_lines = len(server.log_lines())
    sent = [r for r in results if r[1] != -1]
    lat = [r[0] for r in sent]
    errors = sum(1 for r in sent if r[1] != 200)
    leaks = sum(1 for r in sent if r[2])
    res = {
        "requests": len(sent), "skipped_by_time_cap": REQUESTS - len(sent), "concurrency": CONCURRENCY,
        "wall_s": round(wall, 3), "requests_per_s": round(len(sent) / wall, 2) if wall else 0.0,
        "p50_ms": round(1000 * percentile(lat, 50), 1), "p99_ms": round(1000 * percentile(lat, 99), 1),
        "max_ms": round(1000 * max(lat), 1) if lat else None, "errors": errors, "leaks": leaks,
        "peak_rss_mib": round(peak_kib / 1024, 1), "bytes_per_request": sum(map(len, bodies)) // max(len(bodies), 1),
        "cpus": len(os.sched_getaffinity(0)), "log_lines": log_lines,
    }
    (ROOT / "bench" / "out" / "service.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"phiscrub serve, POST /v1/deidentify: {res['requests']} uploads of ~{res['bytes_per_request']} B, "
          f"concurrency {CONCURRENCY}, {res['cpus']} CPUs")
    print(f"  {res['requests_per_s']} requests/s, p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, max {res['max_ms']} ms")
    print(f"  errors {errors}, leaks {leaks}, server peak RSS {res['peak_rss_mib']} MiB, wall {res['wall_s']} s"
          + (f", {res['skipped_by_time_cap']} not sent (time cap)" if res["skipped_by_time_cap"] else ""))
    return 1 if errors or leaks or res["skipped_by_time_cap"] else 0


if __name__ == "__main__":
    sys.exit(main())

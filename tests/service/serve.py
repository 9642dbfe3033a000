"""`phiscrub serve` as a real uvicorn server in a subprocess on a free loopback port, for
tests and the bench: real HTTP, real JSON log lines on its stderr, its own process (so its
peak memory can be read)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import KEY
from tests.pipeline.servers import free_port, stop_process, wait_ready

TOKEN = "svc-token-5f1c0a9e7b2d4c68"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    state: Path
    log: Path
    proc: subprocess.Popen

    def client(self, token: str | None = TOKEN, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0


@contextmanager
def serve(work: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> Iterator[Server]:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "server.log"
    full = {**os.environ, "PHISCRUB_KEY": KEY, "PHISCRUB_SERVE_TOKENS": TOKEN, "PYTHONPATH": str(REPO),
            "PHISCRUB_SERVE_STATE": str(work / "state"), **(env or {})}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "phiscrub", "serve", "--port", str(port), *args],
                                env=full, stdout=fh, stderr=subprocess.STDOUT, cwd=work)
    server = Server(f"http://127.0.0.1:{port}", work / "state", log, proc)
    def healthy() -> bool:
        try:
            return httpx.get(server.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_ready(proc, healthy, "phiscrub serve", 60, lambda: ": " + log.read_text()[-2000:])
        yield server
    finally:
        stop_process(proc, 20)

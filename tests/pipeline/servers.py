"""Real servers on loopback for the storage and engine tests: gcp-storage-emulator (GCS),
moto_server (S3) and a Dask scheduler with two worker processes. Each is started on a free
port by a fixture and stopped after its module."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 60,
               why: Callable[[], str] = lambda: "") -> None:
    """Poll ``ready`` until it holds; raise if the server process exits first (with
    ``why()`` appended: its log, say) or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}{why()}")
        if ready():
            return
        if time.monotonic() > end:
            raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    wait_ready(proc, lambda: _listening(port), what, timeout)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Ask a server to stop; kill it if it has not within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _exe(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).with_name(name))
    if not os.path.exists(found):
        pytest.fail(f"{name} is not installed (pip install -e '.[all,test]')")
    return found


@pytest.fixture(scope="module")
def gcs_emulator() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([_exe("gcp-storage-emulator"), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "gcp-storage-emulator")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([_exe("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture
def cloud_env(monkeypatch: pytest.MonkeyPatch, gcs_emulator: str, s3_server: str) -> None:
    """The standard variables the backends read (forked pool workers inherit them)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """`dask scheduler` and `dask worker` (2 processes, 1 thread each) as subprocesses. A
    task whose worker dies is retried once elsewhere before it is given up (KilledWorker),
    so the crash test costs two worker restarts, not four."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
           "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched = subprocess.Popen([_exe("dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = None
    try:
        _wait_port(port, sched, "dask scheduler")
        address = f"tcp://127.0.0.1:{port}"
        workers = subprocess.Popen([_exe("dask"), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                    "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
        from distributed import Client

        with Client(address, timeout=60) as c:
            c.wait_for_workers(2, timeout=90)
        yield address
    finally:
        if workers is not None:
            stop_process(workers)
        stop_process(sched)

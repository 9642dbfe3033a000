"""A worker forked from a process that already ran OCR gets an engine of its own: the
inherited ONNX session has no runtime threads behind it, and using or destroying it waits
for ever (a pool started from a test session hung this way)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import multiprocessing as mp
import numpy as np
from phiscrub.pixels.engines import get_engine

img = np.zeros((64, 256), np.uint8)
parent = get_engine()
parent.locate(img)  # the parent's engine, its runtime threads started


def child(_):
    engine = get_engine()
    engine.locate(img)
    return engine is not parent


with mp.get_context("fork").Pool(2) as pool:
    assert all(pool.map(child, range(4)))
print("ok")
"""


def test_forked_workers_build_their_own_engine():
    # the timeout only turns a hang into a failure; nothing here is timed
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"

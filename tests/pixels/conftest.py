"""One OCR engine for the whole test session: building it loads two ONNX models."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def engine():
    pytest.importorskip("rapidocr")
    pytest.importorskip("onnxruntime")
    from phiscrub.pixels.engines import get_engine

    return get_engine("rapidocr")

"""The engine registry, and the RapidOCR engine running with the network unreachable."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from phiscrub.pixels import engines as registry
from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.engines import EngineUnavailable, TextEngine, TwoStageEngine, get_engine, register_engine

from ._burn import burn, text_mask, uncovered


class _Fake:
    name = "fake"

    def detect(self, image: np.ndarray) -> list[TextBox]:
        return [TextBox(0, 0, 1, 1, "x", 1.0)]


def test_registry_builds_once_and_can_be_replaced() -> None:
    built: list[_Fake] = []

    def factory() -> _Fake:
        built.append(_Fake())
        return built[-1]

    try:
        register_engine("Fake-Test", factory)
        first = get_engine("fake-test")
        assert isinstance(first, TextEngine) and not isinstance(first, TwoStageEngine)
        assert get_engine(" FAKE-TEST ") is first and len(built) == 1
        assert "fake-test" in registry.available_engines() and "rapidocr" in registry.available_engines()
        register_engine("fake-test", factory)  # re-registering drops the cached instance
        assert get_engine("fake-test") is not first and len(built) == 2
    finally:
        registry._FACTORIES.pop("fake-test", None)
        registry._INSTANCES.pop("fake-test", None)


def test_unknown_engine_is_named() -> None:
    with pytest.raises(EngineUnavailable, match="no-such-engine"):
        get_engine("no-such-engine")


def test_rapidocr_is_two_stage_and_cached(engine) -> None:
    assert isinstance(engine, TwoStageEngine)
    assert get_engine() is engine


def test_models_come_from_the_wheel() -> None:
    pytest.importorskip("rapidocr")
    from phiscrub.pixels.engines.rapid import bundled_models, model_dir

    paths = bundled_models()
    assert all(p.is_file() and p.parent == model_dir() for p in paths.values())
    assert paths["det"].name.endswith("_det_small.onnx") and paths["rec"].name.endswith("_rec_small.onnx")


def test_ocr_works_with_the_network_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh engine (models loaded now, not from the session cache) with every socket
    connection refused: rapidocr must not need, or try, a download."""
    pytest.importorskip("rapidocr")
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    from phiscrub.pixels.engines.rapid import RapidOcrEngine

    fresh = RapidOcrEngine()
    img = np.zeros((160, 400), dtype=np.uint8)
    mask = text_mask(img.shape, "MRN4471923", (20, 80), 0.7)
    burn(img, mask, 255)
    found = fresh.detect(img)
    assert [b.text for b in found] == ["MRN4471923"]
    assert uncovered(mask, found) == 0
    assert fresh.read(img, [(b.x, b.y, b.w, b.h) for b in found])[0][0] == "MRN4471923"
    assert attempts == []


def test_engine_rejects_wrong_dtype(engine) -> None:
    with pytest.raises(TypeError, match="uint8"):
        engine.locate(np.zeros((64, 64), dtype=np.uint16))


def test_blank_image_has_no_text(engine) -> None:
    assert engine.locate(np.zeros((256, 256), dtype=np.uint8)) == []
    assert engine.detect(np.full((256, 256, 3), 128, dtype=np.uint8)) == []


def test_a_crop_read_before_is_not_read_again_and_reads_the_same() -> None:
    """The engine remembers what it read by the crop's pixels: a label at the same place
    in the next image of a series costs nothing, and gives the reading a fresh engine gives."""
    pytest.importorskip("rapidocr")
    from phiscrub.pixels.engines.rapid import RapidOcrEngine, RapidSettings

    img = np.zeros((120, 400), np.uint8)
    for text, org in (("DAVIDSON DOUGLAS", (10, 30)), ("5.0 MHz", (10, 70)), ("L", (300, 100))):
        img[text_mask(img.shape, text, org, 0.7)] = 255
    rects = [(4, 10, 260, 30), (4, 50, 120, 30), (292, 80, 30, 30)]
    remembering = RapidOcrEngine(RapidSettings(threads=1))
    plain = RapidOcrEngine(RapidSettings(threads=1, read_cache=0))
    fed: list[int] = []
    real = remembering._ocr.recognize_txt

    def counting(crops):
        fed.append(len(crops))
        return real(crops)

    remembering._ocr.recognize_txt = counting
    first = remembering.read(img, rects + rects[:1])  # one crop asked for twice
    assert fed == [3] and first[0] == first[3]
    next_image = img.copy()
    next_image[:, 340:] = 99  # elsewhere in the image: the three crops are the same pixels
    again = remembering.read(next_image, rects)
    assert fed == [3] and again == first[:3] == plain.read(img, rects)
    assert "DAVIDSON" in first[0][0].replace(" ", "")
    moved = remembering.read(img, [(5, 10, 260, 30)])  # one column over: other pixels, read
    assert fed == [3, 1] and moved[0][0].replace(" ", "").startswith("DAVIDSON")
    remembering.forget()
    assert remembering.read(img, rects[:1]) == first[:1] and fed == [3, 1, 1]


def test_detector_input_is_padded_to_multiples_of_32_not_resized(engine) -> None:
    """The detector resizes its input to multiples of 32; handed one, it sees the pixels
    as they are (a 512-row image over the anchor strip used to be squashed to 544 rows)."""
    from phiscrub.pixels.engines.rapid import ANCHOR_ROWS

    for h, w in ((512, 512), (100, 200), (1024, 1000), (33, 31)):
        img = np.random.default_rng(h).integers(0, 255, (h, w, 3), dtype=np.uint8)
        got = engine._anchored(img)
        assert got.shape[0] % 32 == 0 and got.shape[1] % 32 == 0, (h, w, got.shape)
        assert got.shape[0] - h >= ANCHOR_ROWS and got.shape[1] - w < 32
        assert np.array_equal(got[:h, :w], img) and not got[:h, w:].any()
        assert got[h:].any()  # the strip's text
        assert max(got.shape[:2]) <= engine.settings.det_limit_side_len or max(h, w) > 1024


def test_read_memory_size_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from phiscrub.pixels.engines.rapid import RapidSettings

    monkeypatch.setenv("PHISCRUB_OCR_READ_CACHE", "0")
    assert RapidSettings().read_cache == 0
    monkeypatch.setenv("PHISCRUB_OCR_READ_CACHE", "not a number")
    assert RapidSettings().read_cache == 4096
    monkeypatch.delenv("PHISCRUB_OCR_READ_CACHE")
    assert RapidSettings().read_cache == 4096

PY ?= python3

.PHONY: install demo test lint bench bench-cli bench-pixels bench-wsi bench-pipeline bench-service

install:
	$(PY) -m pip install -q -e '.[test]'

demo: install
	phiscrub demo phiscrub-demo

test: install
	$(PY) -m ruff check src tests bench tools
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check src tests bench tools

bench:
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench_header.py

# the released CLIs whole-process (start-up, pre-pass, verify): pydicom, dicognito, phiscrub -j 1 / -j 2
bench-cli:
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench_cli.py

# Presidio's redactor pins opencv-python<5, which would replace the headless build rapidocr
# uses: install it without dependencies (its real ones come with the bench extra).
bench-pixels:
	apt-get install -y -qq fonts-dejavu fonts-liberation2 tesseract-ocr >/dev/null
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps presidio-image-redactor
	$(PY) bench/bench_pixels.py

# >= 2 GB synthetic SVS (bench/out/, git-ignored): copy mode and in place against cp, peak RSS
bench-wsi:
	$(PY) -m pip install -q -e '.[test]'
	$(PY) bench/bench_wsi.py

# 2,000 DICOM files + 4 small slides: local pool (2 workers), Dask (2 workers), cp -r
bench-pipeline:
	$(PY) -m pip install -q -e '.[test]'
	$(PY) bench/bench_pipeline.py

# `phiscrub serve` on loopback: 200 concurrent uploads (8 at once, 60 s cap): requests/s, p50/p99, errors, peak RSS
bench-service:
	$(PY) -m pip install -q -e '.[test]'
	$(PY) bench/bench_service.py

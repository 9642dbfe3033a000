# Everything runs from a virtual environment of its own, $(VENV), made with the system
# python3 (Debian/Ubuntu: apt-get install python3-venv): no pyenv, conda or venv of the
# user's is needed or touched. .ci/install does the installing (one script for make, CI and
# the container image), every Python dependency pinned by deploy/constraints.txt.
#   make demo   the core install (pip install -e .) and `phiscrub demo`
#   make test   the Debian packages the tests use (when run as root), phiscrub[all,test,docs],
#               ruff and the full test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# test subprocesses that run `phiscrub`, `moto_server`, `dask`... find the venv's
export PATH := $(abspath $(VENV))/bin:$(PATH)
export VENV PYTHON

.PHONY: install apt demo test lint lock bench bench-cli bench-pixels bench-wsi bench-pipeline bench-service

# stamps: reinstall only when what is installed changes
$(VENV)/.core: pyproject.toml deploy/constraints.txt
	bash .ci/install core
	touch $@

$(VENV)/.test: pyproject.toml deploy/constraints.txt
	bash .ci/install venv
	touch $@ $(VENV)/.core

install: $(VENV)/.test

apt:
	bash .ci/install apt

demo: $(VENV)/.core
	$(VENV)/bin/phiscrub demo phiscrub-demo

test: apt $(VENV)/.test
	$(PY) -m ruff check src tests bench tools
	$(PY) -m pytest -q

lint: $(VENV)/.test
	$(PY) -m ruff check src tests bench tools

# rewrite deploy/constraints.txt from this venv (after changing pyproject.toml's dependencies)
lock: $(VENV)/.test
	$(PY) deploy/lock.py

bench: $(VENV)/.test
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench_header.py

# the released CLIs whole-process (start-up, pre-pass, verify): pydicom, dicognito, phiscrub -j 1 / -j 2
bench-cli: $(VENV)/.test
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/bench_cli.py

# Presidio's redactor pins opencv-python<5, which would replace the headless build rapidocr
# uses: install it without dependencies (its real ones come with the bench extra).
bench-pixels: $(VENV)/.test
	apt-get install -y -qq fonts-dejavu fonts-liberation2 tesseract-ocr >/dev/null
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) -m pip install -q --no-deps presidio-image-redactor
	$(PY) bench/bench_pixels.py

# >= 2 GB synthetic SVS (bench/out/, git-ignored): copy mode and in place against cp, peak RSS
bench-wsi: $(VENV)/.test
	$(PY) bench/bench_wsi.py

# 2,000 DICOM files + 4 small slides: local pool (2 workers), Dask (2 workers), cp -r
bench-pipeline: $(VENV)/.test
	$(PY) bench/bench_pipeline.py

# `phiscrub serve` on loopback: 200 concurrent uploads (8 at once, 60 s cap): requests/s, p50/p99, errors, peak RSS
bench-service: $(VENV)/.test
	$(PY) bench/bench_service.py

PY ?= python3

.PHONY: install demo test lint bench

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

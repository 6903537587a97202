# Two commands do all the set-up: `make demo` and `make test`. Each creates
# .venv and installs the pinned stack when missing (seconds when present).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env demo test lint format clean

env:
	@bash tools/install_env.sh

demo: env
	$(PY) tools/demo.py --work-dir work_dirs/demo

test: env
	$(PY) -m ruff check mmseg_gearnn tools tests configs benchmarks
	$(PY) -m ruff format --check mmseg_gearnn tools tests configs benchmarks
	$(PY) -m pytest -q tests

lint: env
	$(PY) -m ruff check mmseg_gearnn tools tests configs benchmarks

format: env
	$(PY) -m ruff check --fix mmseg_gearnn tools tests configs benchmarks
	$(PY) -m ruff format mmseg_gearnn tools tests configs benchmarks

clean:
	rm -rf work_dirs .pytest_cache .ruff_cache

# Two commands for a fresh clone:
#   make demo   set everything up, then run the end-to-end demo
#   make test   set everything up, then run lint, type checks and the whole test suite
# VENV may point anywhere; it is reused as long as pyproject.toml and the constraints are unchanged.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := torch,tensorflow,sklearn,lightgbm,xgboost,quantization,dev

.PHONY: venv demo test lint bench clean

venv:
	python3 scripts/ensure_venv.py $(VENV) $(EXTRAS)

demo: venv
	$(PY) -m onnxbridge._demo

lint: venv
	$(PY) -m ruff check onnxbridge tests benchmarks scripts
	$(PY) -m ruff format --check onnxbridge tests benchmarks scripts
	$(PY) -m mypy

test: lint
	$(PY) -m pytest

bench: venv
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_tensorflow.py
	$(PY) benchmarks/bench_sklearn.py
	$(PY) benchmarks/bench_quantization.py

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache

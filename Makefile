# Two commands for a fresh clone:
#   make demo   set everything up, then run the end-to-end demo
#   make test   set everything up, then lint, type checks, the docs site (strict), the built
#               package (twine check) and the whole test suite
# VENV may point anywhere; it is reused as long as pyproject.toml and the constraints are unchanged.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS := torch,tensorflow,sklearn,lightgbm,xgboost,quantization,dev

.PHONY: venv demo test lint docs dist bench clean

venv:
	python3 scripts/ensure_venv.py $(VENV) $(EXTRAS)

demo: venv
	$(PY) -m onnxbridge demo

lint: venv
	$(PY) -m ruff check onnxbridge tests benchmarks scripts
	$(PY) -m ruff format --check onnxbridge tests benchmarks scripts
	$(PY) -m mypy

docs: venv
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

dist: venv
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist . > /dev/null
	$(PY) -m twine check --strict dist/*

test: lint docs dist
	$(PY) -m pytest

bench: venv
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_tensorflow.py
	$(PY) benchmarks/bench_sklearn.py
	$(PY) benchmarks/bench_quantization.py

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache

# Two commands for a fresh clone:
#   make demo   set everything up, then run the end-to-end demo
#   make test   set everything up, then lint, type checks, the docs site (strict), the built
#               package (twine check) and the whole test suite
# VENV may point anywhere; it is reused as long as pyproject.toml and the constraints are unchanged.
VENV ?= .venv
PY := $(VENV)/bin/python
# onnxruntime-web for the browser tests, the version the generated pages pin (onnxbridge/checks/_web_check.py).
ORT_WEB_VERSION := $(shell sed -n 's/^ORT_WEB_VERSION = "\(.*\)"  .*/\1/p' onnxbridge/checks/_web_check.py)
ORT_WEB := $(VENV)/web/node_modules/onnxruntime-web/dist
EXTRAS := torch,tensorflow,sklearn,lightgbm,xgboost,quantization,genai,ray,spark,dev

# The promise "pip install onnxbridge works without any framework", tested: the tests marked `core`
# run in a second venv with only the core dependencies (plus pytest and hypothesis), next to VENV.
# Every other test module must skip, not error, when its framework is missing there.
CORE_VENV ?= $(VENV)-core
# torchvision needs the torch it was built for, which is not the main venv's: the tests marked `vision`
# run in a third venv with requirements/constraints-vision.txt's torch and torchvision.
VISION_VENV ?= $(VENV)-vision

.PHONY: venv web-runtime web-bench-runtime transformers-js demo test test-fast test-core test-vision lint docs dist bench census clean

venv:
	python3 scripts/ensure_venv.py $(VENV) $(EXTRAS)

demo: venv web-runtime
	ONNXBRIDGE_ORT_WEB_DIST=$(ORT_WEB) $(PY) -m onnxbridge demo

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

web-runtime: venv
	@test -f $(ORT_WEB)/ort.wasm.min.mjs && grep -q '"version": "$(ORT_WEB_VERSION)"' $(ORT_WEB)/../package.json \
		|| npm install --prefix $(VENV)/web --no-audit --no-fund --silent onnxruntime-web@$(ORT_WEB_VERSION)

# TensorFlow.js for the browser benchmark only (benchmarks/bench_web.py), pinned.
TFJS_VERSION := 4.22.0
web-bench-runtime: venv
	@grep -q '"version": "$(TFJS_VERSION)"' $(VENV)/web/node_modules/@tensorflow/tfjs/package.json 2>/dev/null \
		|| npm install --prefix $(VENV)/web --no-audit --no-fund --silent \
			@tensorflow/tfjs@$(TFJS_VERSION) @tensorflow/tfjs-backend-wasm@$(TFJS_VERSION)

# transformers.js under Node.js, for the tests that load a save(layout="transformers.js") folder in it.
# onnxruntime-node's install script would download CUDA files; its CPU binaries ship in the package.
TRANSFORMERS_JS_VERSION := 4.3.2
TRANSFORMERS_JS := $(VENV)/transformers-js/node_modules/@huggingface/transformers
transformers-js: venv
	@grep -q '"version": "$(TRANSFORMERS_JS_VERSION)"' $(TRANSFORMERS_JS)/package.json 2>/dev/null \
		|| ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix $(VENV)/transformers-js --no-audit --no-fund --silent \
			@huggingface/transformers@$(TRANSFORMERS_JS_VERSION)

test-core:
	python3 scripts/ensure_venv.py $(CORE_VENV) test
	$(CORE_VENV)/bin/python -m pytest -p no:cacheprovider -m core

test-vision:
	python3 scripts/ensure_venv.py $(VISION_VENV) vision,test requirements/constraints-vision.txt
	$(VISION_VENV)/bin/python -m pytest -p no:cacheprovider -m vision

# Two workers, each taking whole test files (module fixtures are built once): most of the suite's
# time is single-threaded Python (tracing, converting, starting interpreters), so two workers on
# two cores take about two thirds of the time of one.
test: lint docs dist web-runtime transformers-js test-core test-vision
	ONNXBRIDGE_ORT_WEB_DIST=$(ORT_WEB) ONNXBRIDGE_TRANSFORMERS_JS=$(TRANSFORMERS_JS) $(PY) -m pytest -n 2 --dist loadfile

# The fast tier, before every commit: lint, types and every test not marked slow (under 4 minutes).
test-fast: lint web-runtime transformers-js
	ONNXBRIDGE_ORT_WEB_DIST=$(ORT_WEB) ONNXBRIDGE_TRANSFORMERS_JS=$(TRANSFORMERS_JS) $(PY) -m pytest -n 2 --dist loadfile -m "not slow"

bench: venv web-runtime web-bench-runtime
	$(PY) benchmarks/bench_llm.py
	$(PY) benchmarks/bench_core.py
	$(PY) benchmarks/bench_tensorflow.py
	$(PY) benchmarks/bench_sklearn.py
	$(PY) benchmarks/bench_quantization.py
	$(PY) benchmarks/bench_large_models.py
	ONNXBRIDGE_ORT_WEB_DIST=$(ORT_WEB) ONNXBRIDGE_TFJS=$(VENV)/web/node_modules/@tensorflow $(PY) benchmarks/bench_web.py
	$(PY) benchmarks/bench_engines.py

# Every causal-LM and seq2seq type in transformers through export, validation and generate(); writes the
# table in docs/transformers.md. About an hour on two cores; not part of the test suite.
census: venv
	$(PY) scripts/transformers_census.py --write

clean:
	rm -rf $(VENV) $(CORE_VENV) $(VISION_VENV) dist build .pytest_cache .mypy_cache .ruff_cache

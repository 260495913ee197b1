# Two entry points: `make demo` (set up + main job) and `make test` (set up + tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint browser-deps bench bench-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/contimg demo --out demo_output

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint browser-deps
	$(BIN)/python -m pytest -q

# The quick loop while editing: no cluster, no browser, no whole-observation runs.
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q -m "not slow and not cluster and not browser"

# Debian's chromium and chromedriver for the QA report's browser test.
browser-deps:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -q chromium chromium-driver)

# The calibration benchmark's peers: MPI CASA (Debian openmpi-bin and casampi) and
# QuartiCal, in its own virtualenv (it pins an older dask).
bench-deps: $(STAMP)
	command -v mpirun >/dev/null || (apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q openmpi-bin libopenmpi-dev)
	$(BIN)/python -m pip install --quiet -e '.[test,mpi]'
	test -x .venv-quartical/bin/goquartical || ($(PYTHON) -m venv .venv-quartical && \
		.venv-quartical/bin/python -m pip install --quiet quartical)

# Every benchmark, each against its baseline, 3 repetitions; one results/<date>.json
# and .md, and the README's table. Full size takes hours (the calibration
# benchmark about 37 min per repetition): e.g. BENCH_ARGS="--preset calibration=medium".
BENCH_ARGS ?=
bench: bench-deps
	cd benchmarks && ../$(BIN)/python run_all.py $(BENCH_ARGS)

clean:
	rm -rf demo_output contimg_runs .pytest_cache .venv-quartical

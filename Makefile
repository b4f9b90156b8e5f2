# leaklab: every command creates (or reuses) the local virtual environment .venv itself.
#   make course   run every chapter in a fresh kernel into _build/ and export HTML
#   make test     unit tests + every notebook re-run and compared (strict nbval)
#   make lab      open JupyterLab on the notebooks
#   make bench    the benchmarks in bench/

# The first interpreter in the supported range (3.11 to 3.13); override with `make PYTHON=...`.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.leaklab-installed

.PHONY: course test lab bench setup clean

$(STAMP): pyproject.toml setup.py src/leaklab/_cachecore.c
	@test -n "$(PYTHON)" || { echo "leaklab needs Python 3.11, 3.12 or 3.13 on PATH (python3 or python3.1x)"; exit 1; }
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@# Optional benchmark peer: a failure here (no wheel for this platform) must not block the course.
	-$(BIN)/python -m pip install --quiet -e '.[bench]'
	@$(BIN)/python -c "import leaklab.caches as c; print('leaklab: LRUCache runs', \
		'compiled (leaklab._cachecore)' if c.COMPILED else 'in pure Python (the optional C extension was not built)')"
	@touch $(STAMP)

setup: $(STAMP)

course: $(STAMP)
	$(BIN)/python tools/run_course.py $(CHAPTERS)

test: $(STAMP)
	$(BIN)/python -m pytest

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

bench: $(STAMP)
	$(BIN)/python bench/bench_caches.py
	$(BIN)/python bench/bench_memoize.py
	$(BIN)/python bench/bench_state.py
	$(BIN)/python bench/bench_queues.py
	$(BIN)/python bench/bench_remote.py
	$(BIN)/python bench/bench_testing.py

clean:
	rm -rf _build

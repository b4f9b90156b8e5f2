# leaklab: every command creates (or reuses) the local virtual environment .venv itself.
#   make course      run every chapter in a fresh kernel, then build the book, the offline decks
#                    and the student workbook, all into _build/
#   make test        unit tests + every notebook re-run and compared (strict nbval) + browser tests
#   make slides CHAPTER=01   present a chapter live (JupyterLab + RISE), running its cells
#   make exercises   only the student workbook (_build/exercises/)
#   make book / make decks   only the book (_build/book/) / the decks (_build/decks/)
#   make lab         open JupyterLab on the notebooks
#   make bench       the benchmarks in bench/

# The first interpreter in the supported range (3.11 to 3.13); override with `make PYTHON=...`.
PYTHON ?= $(shell for p in python3 python3.13 python3.12 python3.11; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.leaklab-installed

.PHONY: course test lab bench setup clean slides exercises book decks

$(STAMP): pyproject.toml setup.py src/leaklab/caches/_core.c $(wildcard package-lock.json)
	@test -n "$(PYTHON)" || { echo "leaklab needs Python 3.11, 3.12 or 3.13 on PATH (python3 or python3.1x)"; exit 1; }
	@test -x $(BIN)/python || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@# Optional benchmark peer: a failure here (no wheel for this platform) must not block the course.
	-$(BIN)/python -m pip install --quiet -e '.[bench]'
	@$(BIN)/python -c "import leaklab.caches as c; print('leaklab: LRUCache runs', \
		'compiled (leaklab.caches._core)' if c.COMPILED else 'in pure Python (the optional C extension was not built)')"
	@# The offline decks need reveal.js, require.js, jQuery and MathJax from the npm registry;
	@# without Node.js the rest of the course still builds and says that the decks were skipped.
	@if command -v npm >/dev/null 2>&1; then npm ci --no-audit --no-fund --loglevel=error \
		|| echo "leaklab: npm ci failed; the offline decks will be skipped"; \
	else echo "leaklab: no npm on PATH; the offline decks will be skipped (install Node.js 18+ and npm)"; fi
	@touch $(STAMP)

setup: $(STAMP)

course: $(STAMP)
	$(BIN)/python tools/run_course.py --deliver $(CHAPTERS)

test: $(STAMP)
	$(BIN)/python -m pytest

slides: $(STAMP)
	$(BIN)/python tools/slides.py $(CHAPTER) $(ARGS)

exercises: $(STAMP)
	$(BIN)/python tools/build_exercises.py

book: $(STAMP)
	$(BIN)/python tools/build_book.py

decks: $(STAMP)
	$(BIN)/python tools/build_decks.py

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

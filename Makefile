# VisFuse: `make run` executes the course, `make test` tests it. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.visfuse-installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
SOLUTIONS := $(sort $(wildcard notebooks/solutions/*.ipynb))

.PHONY: setup run solutions test lint lab bench publish clean

# Idempotent: re-installs only when pyproject.toml changed or the venv is incomplete.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -c "import torch, transformers, captum, papermill, nbval, visfuse_utils" 
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@mkdir -p build/notebooks/solutions build/results
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (profile $${VISFUSE_PROFILE:-full})"; \
	  $(BIN)/papermill --cwd $$(dirname $$nb) -k python3 --no-progress-bar $$nb build/$$nb || exit 1; \
	done
	@$(BIN)/python -m visfuse_utils.report build
	@echo "Executed notebooks: build/notebooks/   results: build/results/   report: build/report.html"

# The exercise solutions (after `make run`: some reuse its results).
solutions: setup
	@mkdir -p build/notebooks/solutions
	@for nb in $(SOLUTIONS); do \
	  echo "== $$nb"; \
	  $(BIN)/papermill --cwd $$(dirname $$nb) -k python3 --no-progress-bar $$nb build/$$nb || exit 1; \
	done

# Lint first (seconds): ruff reads the package, the tests and the notebooks (.ipynb) alike.
test: setup
	$(BIN)/ruff check visfuse_utils tests notebooks data
	VISFUSE_PROFILE=smoke $(BIN)/python -m pytest --nbval-lax --nbval-current-env \
	  --sanitize-with tests/sanitize.cfg tests notebooks

lint: setup
	$(BIN)/ruff check visfuse_utils tests notebooks data

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

bench: setup
	$(BIN)/python tests/bench.py

# After a full `make run`: copy the executed notebooks back so GitHub readers see real outputs.
publish:
	@for nb in $(NOTEBOOKS) $(SOLUTIONS); do [ -f build/$$nb ] && cp build/$$nb $$nb; done; true
	$(BIN)/python tests/clean_notebooks.py $(NOTEBOOKS) $(SOLUTIONS)

clean:
	rm -rf build data/cache
